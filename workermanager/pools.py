"""Worker pools: managed workers of one worker type that Hodei starts and stops with the
demand for that type.

``pools_reconcile()`` runs every HODEI_POOL_RECONCILE_SECONDS in each qcluster (a thread
of its supervisor, next to the schedule ticker: ``PoolReconcileLoop``) and every minute
in the maintenance task, as a fallback. A pass has three steps, each safe to run in
several processes at once:

1. **Health** (no lock held; every transition is a conditional UPDATE, so of two
   reconcilers one wins): each live worker of a pool is looked at through its provider.
   A starting agent that has registered is running; one whose process exited, or that
   did not register within HODEI_WORKER_START_TIMEOUT_SECONDS, has failed; a running one
   whose process is gone (``kill -9``) has died (``managed.managed_worker_died``: its
   executions are lost and retried at once); a drained one (``stopping``) that runs
   nothing any more is stopped.
2. **Decide** (one transaction, the pools' rows locked ``FOR UPDATE SKIP LOCKED``: a
   reconciler running at the same time skips the pools this one holds, so each pool is
   decided once): from the queue and the pool's workers, how many agents it wants,
   within ``min_workers``/``max_workers`` and HODEI_MAX_MANAGED_WORKERS. Growing writes
   the new managed workers' rows (with their Worker rows and credentials); shrinking
   drains idle workers (``Worker.drain``: they claim nothing more). Every change writes
   a PoolScaling row and a ``pool.scaled`` event in that transaction.
3. **Launch** (after the commit, never inside a transaction that could forget an agent
   that runs): the provider starts the new agents. A launch that fails leaves its row
   ``failed``; a later pass replaces it, at most START_FAILURES_PER_MINUTE times a
   minute per pool.

Scaling down never kills a command: a drained agent is stopped only once its worker has
no running execution, and a drain waits for a claim in flight (the claim locks the
worker's row and takes nothing once it is not online)."""

import logging
import math
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Count, Min

from events.services import event_emit
from hodei.exceptions import HodeiError, InvalidInput, InvalidTransition
from hodei.lib import clock
from workermanager import managed as managed_workers
from workermanager.choices import (
    MANAGED_LIVE,
    ExecutionStatus,
    ManagedWorkerStatus,
    PoolStatus,
    ScaleReason,
    WorkerStatus,
)
from workermanager.models import Execution, ManagedWorker, PoolScaling, Worker, WorkerPool
from workermanager.providers import ProviderError, get_provider

log = logging.getLogger("hodei.pools")
M = ManagedWorkerStatus

# A pool whose launches failed this often in the last minute starts nothing more until
# that minute has passed (a bad image or provider must not spin).
START_FAILURES_PER_MINUTE = 3
# Fields of a pool the API and the admin may set.
POOL_FIELDS = (
    "worker_type",
    "provider",
    "min_workers",
    "max_workers",
    "concurrency",
    "labels",
    "scale_up_after_seconds",
    "idle_seconds",
)


# -- the pool's own lifecycle (API and admin) ---------------------------------------------


def pool_create(**fields) -> WorkerPool:
    """A new pool; the next reconcile pass (within HODEI_POOL_RECONCILE_SECONDS) starts
    its first agents. 400 naming the fields for bad bounds or a taken worker type."""
    pool = WorkerPool(**{name: fields[name] for name in POOL_FIELDS if name in fields})
    pool.full_clean()
    pool.save(force_insert=True)
    return pool


@transaction.atomic
def pool_update(*, pool: WorkerPool, **changes) -> WorkerPool:
    """Change a pool's bounds or settings; its agents follow at the next pass (a lower
    max_workers drains the extra ones). The worker type cannot change: the pool's agents
    are of that type."""
    # Locked: a reconcile deciding with the old bounds finishes first, or waits.
    pool = WorkerPool.objects.select_for_update().get(pk=pool.pk)
    if pool.status != PoolStatus.ACTIVE:
        raise InvalidTransition(f"Pool {pool.worker_type} is being deleted.")
    if changes.get("worker_type", pool.worker_type) != pool.worker_type:
        raise InvalidInput(
            "The worker type of a pool cannot change.",
            fields={"worker_type": ["Cannot change: create another pool."]},
        )
    for name in POOL_FIELDS:
        if name in changes:
            setattr(pool, name, changes[name])
    pool.updated_at = clock.now()
    pool.full_clean()
    pool.save()
    return pool


def pool_delete(*, pool: WorkerPool) -> WorkerPool | None:
    """Delete a pool: at once (None) when it has no live agent; otherwise it turns
    ``deleting``, its agents drain (their commands finish) and stop, and the reconciler
    deletes it once the last has stopped. Deleting twice is harmless."""
    with transaction.atomic():
        # Locked: a reconcile pass must not start an agent for it meanwhile.
        pool = WorkerPool.objects.select_for_update().filter(pk=pool.pk).first()
        if pool is None:
            return None
        if not pool.workers.filter(status__in=MANAGED_LIVE).exists():
            pool.delete()
            return None
        pool.mark_deleting()
    return pool


# -- the reconciler -----------------------------------------------------------------------


@dataclass
class ReconcileResult:
    started: int = 0
    drained: int = 0
    stopped: int = 0
    failed: int = 0
    deleted: int = 0

    def __bool__(self) -> bool:
        return bool(self.started or self.drained or self.stopped or self.failed or self.deleted)

    def __str__(self) -> str:
        return (
            f"pools: {self.started} agent(s) started, {self.drained} drained, "
            f"{self.stopped} stopped, {self.failed} failed, {self.deleted} pool(s) deleted"
        )


def pools_reconcile(*, now: datetime | None = None) -> ReconcileResult:
    """One pass over every pool (see the module's docstring). Idempotent; safe on several
    processes at once. Must not run inside a transaction when there are pools (agents are
    launched after the decisions commit)."""
    result = ReconcileResult()
    if not WorkerPool.objects.exists():
        return result  # (the maintenance task's fallback, where no pool is configured)
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("pools_reconcile must not run inside a transaction")
    backends = _Backends()
    _check_health(result, backends)
    launches = _decide(result, now=now or clock.now())
    for managed, credential in launches:
        try:
            managed_workers.managed_worker_launch(
                managed, credential=credential, backend=backends.get(managed.provider)
            )
            result.started += 1
        except managed_workers.WorkerStartFailed as exc:
            log.warning("pool %s: %s", managed.type, exc.message)
            result.failed += 1
    return result


class _Backends:
    """One provider object per provider for a pass (the kubernetes one keeps an API
    client and a short cache of pod phases)."""

    def __init__(self):
        self._backends = {}

    def get(self, name: str):
        if name not in self._backends:
            self._backends[name] = get_provider(name)
        return self._backends[name]


def _check_health(result: ReconcileResult, backends: _Backends) -> None:
    rows = ManagedWorker.objects.filter(pool__isnull=False, status__in=MANAGED_LIVE)
    for managed in rows.select_related("worker").order_by("id"):
        try:
            backend = backends.get(managed.provider)
            if managed.status == M.STARTING:
                _check_starting(managed, backend, result)
            elif managed.status == M.RUNNING:
                _check_running(managed, backend, result)
            else:
                _check_stopping(managed, backend, result)
        except (ProviderError, HodeiError) as exc:
            # One pod or process that cannot be asked must not stop the pass.
            log.warning("pool worker %s: %s", managed.name, exc)


def _check_starting(managed: ManagedWorker, backend, result: ReconcileResult) -> None:
    worker = Worker.objects.filter(
        name=managed.name, status=WorkerStatus.ONLINE, registered_at__gte=managed.created_at
    ).first()
    if worker is not None:
        try:
            managed.mark_running(worker=worker, now=clock.now())
        except InvalidTransition:
            pass  # another reconciler saw it first, or it was stopped
        return
    launched = bool(managed.host)
    if launched and backend.is_alive(managed) is False:
        result.failed += managed_workers.managed_worker_died(
            managed=managed, reason=backend.exit_reason(managed)
        )
        return
    timeout = settings.HODEI_WORKER_START_TIMEOUT_SECONDS
    if (clock.now() - managed.created_at).total_seconds() <= timeout:
        return
    if launched:
        backend.stop(managed, grace_seconds=1.0)
        reason = f"agent did not register within {timeout:g} s"
    else:
        # Its row was written but the reconciler that wrote it stopped before launching.
        reason = f"agent not launched within {timeout:g} s"
    result.failed += managed_workers.managed_worker_died(managed=managed, reason=reason)


def _check_running(managed: ManagedWorker, backend, result: ReconcileResult) -> None:
    reason = managed_workers.why_gone(managed, backend)
    if reason is not None:
        result.failed += managed_workers.managed_worker_died(managed=managed, reason=reason)


def _check_stopping(managed: ManagedWorker, backend, result: ReconcileResult) -> None:
    """A drained worker stops once it runs nothing (or once its agent is gone anyway)."""
    if backend.is_alive(managed) is not False and managed.worker_id:
        running = Execution.objects.filter(
            worker_id=managed.worker_id, status=ExecutionStatus.RUNNING
        )
        if running.exists():
            return  # its commands finish first
    before = managed.status
    managed_workers.managed_worker_stop_now(managed=managed)
    if before != managed.status:
        result.stopped += 1


def _decide(result: ReconcileResult, *, now: datetime) -> list[tuple[ManagedWorker, str]]:
    launches = []
    with transaction.atomic():
        # SKIP LOCKED: a reconciler running at the same time leaves these pools to this
        # one (and an API update waits for this decision), so no pool is decided twice
        # and the quota below is counted once for all of them.
        pools = list(WorkerPool.objects.select_for_update(skip_locked=True).order_by("id"))
        if not pools:
            return []
        quota_left = settings.HODEI_MAX_MANAGED_WORKERS - (
            ManagedWorker.objects.filter(status__in=MANAGED_LIVE).count()
        )
        for pool in pools:
            started = _decide_pool(pool, now=now, quota_left=quota_left, result=result)
            quota_left -= len(started)
            launches += started
    return launches


@dataclass
class _PoolState:
    """What a pool's decision is made of, read in its locked transaction."""

    serving: list[ManagedWorker]  # starting or running
    stopping: list[ManagedWorker]  # drained, waiting for their commands to end
    busy: dict  # worker id -> running executions
    queued: int
    waited_seconds: float  # by the oldest queued execution of the type
    died: int  # agents that failed since the pool's last decision

    @property
    def current(self) -> int:
        return len(self.serving)

    @property
    def free(self) -> int:
        capacity = sum(w.concurrency for w in self.serving)
        return max(0, capacity - sum(self.busy.values()))


def _pool_state(pool: WorkerPool, *, now: datetime) -> _PoolState:
    live = list(
        pool.workers.filter(status__in=MANAGED_LIVE).select_related("worker").order_by("id")
    )
    serving = [w for w in live if w.status in (M.STARTING, M.RUNNING)]
    worker_ids = [w.worker_id for w in serving if w.worker_id]
    busy = dict(
        Execution.objects.filter(status=ExecutionStatus.RUNNING, worker_id__in=worker_ids)
        .values_list("worker_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    # Executions of the pool's type only: untyped ones ("any worker") are served by
    # whatever agent is there, and would make every pool grow.
    queue = Execution.objects.filter(
        status=ExecutionStatus.QUEUED, worker_type=pool.worker_type, available_at__lte=now
    ).aggregate(n=Count("id"), oldest=Min("available_at"))
    last_decision = pool.scalings.order_by("-id").values_list("at", flat=True).first()
    died = pool.workers.filter(status=M.FAILED)
    if last_decision is not None:
        died = died.filter(stopped_at__gt=last_decision)
    return _PoolState(
        serving=serving,
        stopping=[w for w in live if w.status == M.STOPPING],
        busy=busy,
        queued=queue["n"],
        waited_seconds=(now - queue["oldest"]).total_seconds() if queue["oldest"] else 0.0,
        died=died.count(),
    )


def _decide_pool(
    pool: WorkerPool, *, now: datetime, quota_left: int, result: ReconcileResult
) -> list[tuple[ManagedWorker, str]]:
    state = _pool_state(pool, now=now)
    if pool.status == PoolStatus.DELETING:
        if not state.serving and not state.stopping:
            pool.delete()
            result.deleted += 1
            return []
        result.drained += _drain(
            pool, state, state.serving, ScaleReason.DELETED, "the pool was deleted", now, result
        )
        _touch(pool, desired=0, now=now)
        return []

    want, reason, detail = _wanted(pool, state)
    started: list[tuple[ManagedWorker, str]] = []
    if want > state.current:
        room = pool.max_workers - state.current - len(state.stopping)
        count = min(want - state.current, room, max(quota_left, 0))
        if count < want - state.current:
            detail += f"; {want - state.current} wanted, {count} allowed by " + (
                "max_workers (draining agents count)"
                if count == room
                else "HODEI_MAX_MANAGED_WORKERS"
            )
        if count > 0 and _recent_start_failures(pool, now=now) >= START_FAILURES_PER_MINUTE:
            log.warning("pool %s: launches keep failing; waiting", pool.worker_type)
            count = 0
        if count > 0:
            started = [_new_worker(pool) for _ in range(count)]
            _record(pool, state.current, state.current + count, reason, detail, now)
    else:
        drained, reason, detail = _to_drain(pool, state, want=want, now=now)
        result.drained += _drain(pool, state, drained, reason, detail, now, result)
    _touch(pool, desired=want, now=now)
    return started


def _wanted(pool: WorkerPool, state: _PoolState) -> tuple[int, str, str]:
    """How many serving agents the pool wants now, why, and the numbers behind it: the
    largest of what replaces agents that died, what its queue asks, and its minimum (on a
    tie, the first of these: a replaced agent's lost executions are queued again, and
    "replace" says why better than "queue")."""
    options = []
    if state.died:
        options.append(
            (
                state.current + state.died,
                ScaleReason.REPLACE,
                f"{state.died} agent(s) ended without being stopped",
            )
        )
    if state.queued > state.free:
        missing = math.ceil((state.queued - state.free) / pool.concurrency)
        options.append(
            (
                state.current + missing,
                ScaleReason.QUEUE,
                f"{state.queued} queued execution(s) of type {pool.worker_type}, "
                f"{state.free} free slot(s)",
            )
        )
    elif (
        state.queued
        and state.waited_seconds >= pool.scale_up_after_seconds
        and not any(w.status == M.STARTING for w in state.serving)
    ):
        options.append(
            (
                state.current + 1,
                ScaleReason.WAIT,
                f"the oldest queued execution of type {pool.worker_type} has waited "
                f"{state.waited_seconds:.0f} s (scale_up_after_seconds: "
                f"{pool.scale_up_after_seconds})",
            )
        )
    options.append((pool.min_workers, ScaleReason.MIN, f"min_workers is {pool.min_workers}"))
    want, reason, detail = max(options, key=lambda option: option[0])
    return min(want, pool.max_workers), reason, detail


def _to_drain(
    pool: WorkerPool, state: _PoolState, *, want: int, now: datetime
) -> tuple[list[ManagedWorker], str, str]:
    if state.current > pool.max_workers:
        # Lowered bounds: the least busy first (they drain fastest).
        extra = sorted(state.serving, key=lambda w: state.busy.get(w.worker_id, 0))
        count = state.current - pool.max_workers
        return extra[:count], ScaleReason.MAX, f"max_workers is {pool.max_workers}"
    if state.queued or state.current <= max(pool.min_workers, want):
        return [], "", ""
    cutoff = now - timedelta(seconds=pool.idle_seconds)
    idle = [
        w
        for w in state.serving
        if w.status == M.RUNNING
        and w.worker_id
        and not state.busy.get(w.worker_id)
        and w.started_at is not None
        and w.started_at <= cutoff
    ]
    recent = set(
        Execution.objects.filter(
            worker_id__in=[w.worker_id for w in idle], finished_at__gte=cutoff
        ).values_list("worker_id", flat=True)
    )
    idle = [w for w in idle if w.worker_id not in recent]
    count = min(len(idle), state.current - max(pool.min_workers, want))
    detail = f"{count} agent(s) ran nothing for {pool.idle_seconds} s"
    return idle[:count], ScaleReason.IDLE, detail


def _recent_start_failures(pool: WorkerPool, *, now: datetime) -> int:
    return pool.workers.filter(
        status=M.FAILED, started_at__isnull=True, stopped_at__gte=now - timedelta(minutes=1)
    ).count()


def _new_worker(pool: WorkerPool) -> tuple[ManagedWorker, str]:
    return managed_workers.managed_worker_create(
        type=pool.worker_type,
        concurrency=pool.concurrency,
        labels=pool.labels or {},
        provider=pool.provider,
        pool=pool,
    )


def _drain(pool, state, workers, reason: str, detail: str, now: datetime, result) -> int:
    """Stop giving ``workers`` work (their agents finish what they run); the health step
    of a later pass stops each once it runs nothing. Returns how many were drained."""
    drained = 0
    for managed in workers:
        try:
            managed.mark_stopping()
        except InvalidTransition:
            continue  # it ended meanwhile
        drained += 1
        if managed.worker_id:
            # The claim locks the worker's row and takes nothing unless it is online:
            # once this commits, nothing new reaches the agent.
            with suppress(InvalidTransition):  # not online: it takes nothing anyway
                managed.worker.drain()
    if drained:
        _record(pool, state.current, state.current - drained, reason, detail, now)
    return drained


def _record(pool, before: int, after: int, reason: str, detail: str, now) -> None:
    """The decision, in the scaling log and as an event, in the decision's transaction."""
    PoolScaling.objects.create(
        pool=pool,
        at=now,
        from_workers=before,
        to_workers=after,
        reason=reason,
        detail=detail[:500],
    )
    event_emit(
        "pool.scaled",
        subject=("pool", pool.pk),
        ids={"pool_id": pool.pk},
        payload={
            "pool": str(pool.pk),
            "worker_type": pool.worker_type,
            "from": before,
            "to": after,
            "reason": reason,
        },
    )
    log.info("pool %s: %s -> %s (%s: %s)", pool.worker_type, before, after, reason, detail)


def _touch(pool: WorkerPool, *, desired: int, now: datetime) -> None:
    WorkerPool.objects.filter(pk=pool.pk).update(desired_workers=desired, reconciled_at=now)


# -- the qcluster's loop ------------------------------------------------------------------


class PoolReconcileLoop:
    """``pools_reconcile`` every HODEI_POOL_RECONCILE_SECONDS, in a thread of the qcluster
    supervisor (scheduler/management/commands/qcluster.py). A thread rather than a step of
    the schedule ticker: a pass may wait for a provider (an agent that exits, a pod API
    call), and schedules must still fire within a fraction of a second."""

    def __init__(self, *, interval_seconds: float | None = None):
        self.interval_seconds = interval_seconds or settings.HODEI_POOL_RECONCILE_SECONDS
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pools", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def step(self) -> bool:
        """One pass; True if it changed something. Errors are logged, never raised: a
        broken pool must not stop the others, or the ticker."""
        try:
            return bool(pools_reconcile())
        except Exception:
            log.exception("pool reconcile failed; trying again")
            connection.close()  # a broken connection is opened afresh next time
            return False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                close_old_connections()
                self.step()
                self._stop.wait(self.interval_seconds)
        finally:
            connection.close()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


def pools_stop_local() -> int:
    """Stop the pools' agents that run as processes of this host (when its qcluster
    stops: they are its children, and nobody else could stop them). Agents elsewhere
    (pods) keep running; a pass of another qcluster takes them over. All at once: each
    may take the agents' shutdown grace."""
    live = list(
        ManagedWorker.objects.filter(
            pool__isnull=False, status__in=MANAGED_LIVE, host=socket.gethostname()
        )
    )

    def stop(managed: ManagedWorker) -> None:
        try:
            managed_workers.managed_worker_stop(managed=managed)
        except HodeiError as exc:
            log.warning("could not stop %s: %s", managed.name, exc)
        finally:
            connection.close()  # this thread's

    if live:
        with ThreadPoolExecutor(max_workers=min(len(live), 16)) as executor:
            list(executor.map(stop, live))
    return len(live)
