"""Managed workers: agents that the control plane starts and stops itself through a
provider (workermanager.providers).

Starting one never runs inside a transaction it could roll back: the row is written
first (autocommit), with the Worker row and a worker credential for the agent
(credentials.worker_enroll); then the provider starts the agent, in HTTP mode with that
credential; then we wait for the agent to register, woken by the registration's NOTIFY
(on SQLite, which has none, by polling). A managed worker that ends has its credential
revoked.
Reads never touch the provider: process state is reconciled by the maintenance task
(``managed_workers_reconcile``)."""

import select
import socket
import time

from django.conf import settings
from django.db import transaction

from hodei.exceptions import InvalidInput, InvalidTransition, QuotaExceeded, Unavailable
from hodei.lib import clock
from hodei.lib.ids import uuid7
from hodei.lib.listen import Listener
from workermanager import credentials, outbox, services
from workermanager.choices import MANAGED_LIVE, ManagedWorkerStatus, WorkerStatus
from workermanager.models import ManagedWorker, Worker
from workermanager.notify import WORKERS_CHANNEL
from workermanager.providers import ProviderError, get_provider

# How often a start that is waiting for the registration checks that the agent lives.
ALIVE_CHECK_SECONDS = 0.25


class WorkerStartFailed(Unavailable):
    def __init__(self, managed: ManagedWorker):
        super().__init__(f"Could not start a worker: {managed.failure_reason}")
        self.managed = managed


def managed_worker_start(
    *, type: str, concurrency: int = 1, labels: dict | None = None, provider: str = "local"
) -> ManagedWorker:
    """Start an agent through ``provider`` and wait (a few seconds at most) until it has
    registered as a Worker. Raises WorkerStartFailed (503), with the row left ``failed``
    and the reason recorded, if it cannot start."""
    _check_quota(concurrency=concurrency)
    if transaction.get_connection().in_atomic_block:
        # A rollback would forget the row of an agent that keeps running.
        raise RuntimeError("managed_worker_start must not run inside a transaction")
    try:
        backend = get_provider(provider)
    except ProviderError as exc:
        raise Unavailable(str(exc)) from exc
    managed, credential = managed_worker_create(
        type=type, concurrency=concurrency, labels=labels or {}, provider=provider
    )
    listener = Listener([WORKERS_CHANNEL])
    listener.start()
    try:
        managed_worker_launch(managed, credential=credential, backend=backend)
        worker = _wait_for_registration(managed, backend, listener)
    finally:
        listener.close()
    managed.mark_running(worker=worker, now=clock.now())
    return managed


def managed_worker_create(
    *, type: str, concurrency: int, labels: dict, provider: str, pool=None
) -> tuple[ManagedWorker, str]:
    """The row of an agent about to be launched, its Worker row and its credential
    (returned raw, for ``managed_worker_launch``). Worker pools call it inside their
    decision's transaction and launch after the commit: the row always exists before
    the agent does."""
    managed = ManagedWorker.objects.create(
        name=f"managed-{type}-{uuid7().hex[-12:]}",
        type=type,
        concurrency=concurrency,
        labels=labels,
        provider=provider,
        pool=pool,
    )
    # The agent runs in HTTP mode with a credential of its own, made here: it never
    # holds the database's credentials or the secret key.
    _, credential = credentials.worker_enroll(
        name=managed.name, type=type, labels=labels, capacity=concurrency
    )
    return managed, credential


def managed_worker_launch(managed: ManagedWorker, *, credential: str, backend=None) -> None:
    """Have the provider start the agent of ``managed`` and record where it runs; does
    not wait for it to register. Raises WorkerStartFailed, with the row left ``failed``,
    if the provider refuses."""
    try:
        backend = backend or get_provider(managed.provider)
        launch = backend.start(managed, credential=credential)
    except ProviderError as exc:
        _fail(managed, str(exc))
    ManagedWorker.objects.filter(pk=managed.pk).update(pid=launch.pid, host=launch.host)
    managed.pid, managed.host = launch.pid, launch.host


def _check_quota(*, concurrency: int) -> None:
    limit = settings.HODEI_MAX_MANAGED_CONCURRENCY
    if concurrency > limit:
        raise InvalidInput(
            f"At most {limit} commands at once per managed worker.",
            fields={"concurrency": [f"At most {limit} (HODEI_MAX_MANAGED_CONCURRENCY)."]},
        )
    live = ManagedWorker.objects.filter(status__in=MANAGED_LIVE).count()
    if live >= settings.HODEI_MAX_MANAGED_WORKERS:
        raise QuotaExceeded(
            f"{live} managed workers are live, the most allowed (HODEI_MAX_MANAGED_WORKERS): "
            "stop one first."
        )


def _wait_for_registration(managed: ManagedWorker, backend, listener: Listener) -> Worker:
    deadline = time.monotonic() + settings.HODEI_WORKER_START_TIMEOUT_SECONDS
    while True:
        worker = Worker.objects.filter(name=managed.name, status=WorkerStatus.ONLINE).first()
        if worker is not None:
            return worker
        if backend.is_alive(managed) is False:
            _fail(managed, backend.exit_reason(managed))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            backend.stop(managed, grace_seconds=1.0)
            timeout = settings.HODEI_WORKER_START_TIMEOUT_SECONDS
            _fail(managed, f"agent did not register within {timeout} s")
        wait = min(remaining, ALIVE_CHECK_SECONDS)
        if listener.alive:
            ready, _, _ = select.select([listener.fileno()], [], [], wait)
            if ready:
                listener.drain()
        else:
            time.sleep(min(wait, 0.05))  # SQLite: no notifications


def _fail(managed: ManagedWorker, reason: str):
    managed.mark_failed(reason=reason, now=clock.now())
    _retire_credential(managed, reason="its managed worker failed to start")
    raise WorkerStartFailed(managed)


def _retire_credential(managed: ManagedWorker, *, reason: str) -> None:
    """A managed worker that has ended never runs again (a new start is a new worker):
    its credential is revoked, so that nothing can use it any more."""
    worker = Worker.objects.filter(name=managed.name).first()
    if worker is not None:
        credentials.worker_credential_revoke(worker=worker, reason=reason)


def managed_worker_stop(*, managed: ManagedWorker) -> ManagedWorker:
    """Stop the agent gracefully (it finishes or cancels its work and goes offline).
    Stopping a stopped worker is harmless."""
    if managed.status not in MANAGED_LIVE:
        return managed
    if managed.status != ManagedWorkerStatus.STOPPING:  # (a drained one is stopping)
        try:
            managed.mark_stopping()
        except InvalidTransition:
            return managed  # stopped or failed meanwhile
    return managed_worker_stop_now(managed=managed)


def managed_worker_stop_now(*, managed: ManagedWorker) -> ManagedWorker:
    """The second half of a stop, for a worker already ``stopping`` (a pool's drained
    worker whose commands have all ended): the provider stops the agent, the rows
    record it, the credential is revoked."""
    grace = settings.HODEI_SHUTDOWN_GRACE_SECONDS + settings.HODEI_KILL_GRACE_SECONDS + 2
    try:
        get_provider(managed.provider).stop(managed, grace_seconds=grace)
    except ProviderError as exc:
        raise Unavailable(str(exc)) from exc
    now = clock.now()
    with transaction.atomic():
        try:
            managed.mark_stopped(now=now)
        except InvalidTransition:
            return managed  # another stop (or a reconciler) recorded it first
        # A graceful agent has gone offline itself; a killed one could not, and what it
        # still ran will never be reported: lost, and retried.
        _take_offline(
            managed,
            now=now,
            event=("offline", "Its managed worker was stopped."),
            lost="was stopped",
            credential="its managed worker was stopped",
        )
    return managed


def managed_worker_died(*, managed: ManagedWorker, reason: str) -> bool:
    """Record that the agent of a live managed worker is gone without being stopped
    (its process exited, its pod ended): the row is ``failed`` with ``reason``, its
    Worker offline (``worker.lost``) and its running executions lost, so that they are
    retried now rather than after the missed heartbeats. False if the row had already
    ended (a stop or another reconciler won)."""
    now = clock.now()
    with transaction.atomic():
        try:
            managed.mark_failed(reason=reason, now=now)
        except InvalidTransition:
            return False
        _take_offline(
            managed,
            now=now,
            event=("lost", f"Its managed worker died: {reason}"),
            lost=f"lost its agent: {reason}",
            credential="its managed worker's agent died",
        )
    return True


def _take_offline(managed, *, now, event: tuple[str, str], lost: str, credential: str) -> None:
    """The Worker of a managed worker that ended: offline (with its event), what it still
    ran lost (and retried), its credential revoked."""
    worker = Worker.objects.filter(name=managed.name).first()
    if worker is None:
        return
    if worker.go_offline(now=now):
        outbox.worker_event(worker, event[0], reason=event[1])
        services.executions_lose(worker=worker, now=now, reason=f"Worker {worker.name} {lost}.")
    credentials.worker_credential_revoke(worker=worker, reason=credential)


def managed_workers_reconcile() -> int:
    """Make the rows tell the truth (maintenance task): a live managed worker whose
    process exited, or whose agent went offline, has failed. Returns how many changed."""
    failed = 0
    # A pool's workers are reconciled with their pool (pools.pools_reconcile); a stopping
    # one is being stopped: its stop records how it ended.
    live = ManagedWorker.objects.filter(status__in=MANAGED_LIVE, pool__isnull=True).exclude(
        status=ManagedWorkerStatus.STOPPING
    )
    for managed in live.select_related("worker"):
        reason = why_gone(managed, get_provider(managed.provider))
        if reason is not None:
            failed += managed_worker_died(managed=managed, reason=reason)
    return failed


def why_gone(managed: ManagedWorker, backend) -> str | None:
    """Why the agent of a live managed worker is gone (its process exited, its pod
    ended, or, on another host, it went offline without being stopped); None while it
    lives."""
    alive = backend.is_alive(managed)
    if alive is False:
        return backend.exit_reason(managed)
    # Another host's agent (alive is None): its heartbeats speak for it.
    if alive is None and managed.worker and managed.worker.status == WorkerStatus.OFFLINE:
        return "The agent went offline without being stopped."
    return None


def managed_workers_stop_local() -> int:
    """Stop every live managed worker this host's worker manager started (when it shuts
    down). A pool's workers are the business of the qcluster that reconciles the pool
    (``pools.pools_stop_local``)."""
    stopped = 0
    live = ManagedWorker.objects.filter(
        status__in=MANAGED_LIVE, host=socket.gethostname(), pool__isnull=True
    )
    for managed in live:
        managed_worker_stop(managed=managed)
        stopped += 1
    return stopped
