"""Managed workers: agents that the control plane starts and stops itself through a
provider (workermanager.providers).

Starting one never runs inside a transaction it could roll back: the row is written
first (autocommit), then the provider starts the agent, then we wait for the agent to
register, woken by the registration's NOTIFY (on SQLite, which has none, by polling).
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
from workermanager.choices import MANAGED_LIVE, WorkerStatus
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
    backend = get_provider(provider)
    managed = ManagedWorker.objects.create(
        name=f"managed-{type}-{uuid7().hex[-12:]}",
        type=type,
        concurrency=concurrency,
        labels=labels or {},
        provider=provider,
    )
    listener = Listener([WORKERS_CHANNEL])
    listener.start()
    try:
        try:
            launch = backend.start(managed)
        except ProviderError as exc:
            _fail(managed, str(exc))
        ManagedWorker.objects.filter(pk=managed.pk).update(pid=launch.pid, host=launch.host)
        managed.pid, managed.host = launch.pid, launch.host
        worker = _wait_for_registration(managed, backend, listener)
    finally:
        listener.close()
    managed.mark_running(worker=worker, now=clock.now())
    return managed


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
    raise WorkerStartFailed(managed)


def managed_worker_stop(*, managed: ManagedWorker) -> ManagedWorker:
    """Stop the agent gracefully (it finishes or cancels its work and goes offline).
    Stopping a stopped worker is harmless."""
    if managed.status not in MANAGED_LIVE:
        return managed
    try:
        managed.mark_stopping()
    except InvalidTransition:
        return managed  # stopped or failed meanwhile
    grace = settings.HODEI_SHUTDOWN_GRACE_SECONDS + settings.HODEI_KILL_GRACE_SECONDS + 2
    try:
        get_provider(managed.provider).stop(managed, grace_seconds=grace)
    except ProviderError as exc:
        raise Unavailable(str(exc)) from exc
    now = clock.now()
    managed.mark_stopped(now=now)
    if managed.worker_id:
        # A graceful agent has done this itself; a killed one could not.
        Worker.objects.get(pk=managed.worker_id).go_offline(now=now)
    return managed


def managed_workers_reconcile() -> int:
    """Make the rows tell the truth (maintenance task): a live managed worker whose
    process exited, or whose agent went offline, has failed. Returns how many changed."""
    failed = 0
    for managed in ManagedWorker.objects.filter(status__in=MANAGED_LIVE).select_related("worker"):
        backend = get_provider(managed.provider)
        alive = backend.is_alive(managed)
        reason = backend.exit_reason(managed) if alive is False else ""
        # Another host's agent (alive is None): its heartbeats speak for it.
        if alive is None and managed.worker and managed.worker.status == WorkerStatus.OFFLINE:
            alive, reason = False, "The agent went offline without being stopped."
        if alive is False:
            try:
                managed.mark_failed(reason=reason, now=clock.now())
                failed += 1
            except InvalidTransition:
                pass  # stopped meanwhile
    return failed


def managed_workers_stop_local() -> int:
    """Stop every live managed worker of this host (when the worker manager shuts down)."""
    stopped = 0
    for managed in ManagedWorker.objects.filter(status__in=MANAGED_LIVE, host=socket.gethostname()):
        managed_worker_stop(managed=managed)
        stopped += 1
    return stopped
