"""Workflows on executions: queueing, retrying, settling reports from workers."""

import socket
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, models, transaction

from hodei.exceptions import InvalidInput, InvalidTransition, Unavailable
from hodei.lib import clock
from hodei.lib.ids import uuid7
from orchestrator.models import Job
from scheduler.choices import LIVE_WORKER_STATUSES, WorkerStatus
from scheduler.models import Worker
from telemetry import tracing
from workermanager.choices import MANAGED_LIVE, RETRYABLE, TERMINAL, ExecutionStatus, Trigger
from workermanager.models import Execution, ExecutionLog, ManagedWorker
from workermanager.notify import notify_cancel, notify_queued
from workermanager.providers import ProviderError, get_provider

DEFAULT_LOST_RETRIES = Job._meta.get_field("max_lost_retries").default


@transaction.atomic
def execution_enqueue(
    *,
    job: Job | None = None,
    command: str | None = None,
    type: str | None = None,
    worker_type: str | None = None,
    env: dict | None = None,
    timeout_seconds: int | None = None,
    trigger: str = Trigger.API,
    schedule=None,
    scheduled_for: datetime | None = None,
    retry_of: Execution | None = None,
    available_at: datetime | None = None,
) -> Execution:
    """Queue an execution. The job, if any, supplies every default; the arguments given
    override them. An empty command is a valid no-op that succeeds at once."""
    with tracing.tracer.start_as_current_span("execution.enqueue") as span:
        execution = _enqueue(
            job=job,
            command=command,
            type=type,
            worker_type=worker_type,
            env=env,
            timeout_seconds=timeout_seconds,
            trigger=trigger,
            schedule=schedule,
            scheduled_for=scheduled_for,
            retry_of=retry_of,
            available_at=available_at,
        )
        span.set_attribute("hodei.execution_id", str(execution.id))
        return execution


def _enqueue(
    *,
    job,
    command,
    type,
    worker_type,
    env,
    timeout_seconds,
    trigger,
    schedule,
    scheduled_for,
    retry_of,
    available_at,
) -> Execution:
    if job is None and not command:
        raise InvalidInput(
            "Nothing to run: give a job_id or a command.",
            fields={"command": ["Required when no job_id is given."]},
        )
    now = clock.now()
    execution = Execution(
        job=job,
        command=command if command is not None else (job.command if job else ""),
        type=type or (job.type if job else Execution._meta.get_field("type").default),
        worker_type=worker_type if worker_type is not None else (job.worker_type if job else ""),
        env={**(job.env if job else {}), **(env or {})},
        timeout_seconds=timeout_seconds
        if timeout_seconds is not None
        else (job.timeout_seconds if job else None),
        trigger=trigger,
        schedule=schedule,
        scheduled_for=scheduled_for,
        created_at=now,
        available_at=available_at or now,
    )
    execution.trace_id, execution.trace_parent = tracing.current_ids()
    if retry_of is not None:
        execution.retry_of = retry_of
        execution.attempt = retry_of.attempt + 1
        execution.retries_used = retry_of.retries_used
        execution.lost_retries_used = retry_of.lost_retries_used
        if retry_of.status == ExecutionStatus.LOST:
            execution.lost_retries_used += 1
        elif trigger == Trigger.RETRY:
            execution.retries_used += 1
    execution.save(force_insert=True)
    if job is not None:
        execution._mirror_status_to_job()
    if not execution.command.strip():
        # Nothing to run (an empty build, as in Jenkins): done without a worker.
        execution.start(worker=None, now=now)
        execution.finish(exit_code=0, now=now)
    else:
        notify_queued(execution.worker_type)
    return execution


@transaction.atomic
def execution_cancel(*, execution: Execution) -> Execution:
    execution.request_cancel(now=clock.now())
    if execution.status == ExecutionStatus.RUNNING:
        # Its worker polls for cancellations every half second; this makes it immediate.
        notify_cancel(execution.id)
    return execution


def execution_logs_store(*, chunks: list) -> None:
    """Store output chunks, given as (execution id, agent.output.Chunk) pairs, in one
    INSERT. A chunk already stored (a retried flush) is skipped, never duplicated."""
    rows = [
        ExecutionLog(
            execution_id=execution_id,
            seq=chunk.seq,
            stream=chunk.stream,
            message=chunk.message,
            created_at=datetime.fromtimestamp(chunk.created_at, tz=UTC),
        )
        for execution_id, chunk in chunks
    ]
    ExecutionLog.objects.bulk_create(rows, ignore_conflicts=True)


@transaction.atomic
def execution_settle(
    *,
    execution: Execution,
    worker: Worker | None,
    outcome: str,
    exit_code: int | None,
    error: str = "",
    log_bytes: int = 0,
    log_truncated: bool = False,
) -> bool:
    """Record a worker's report of how a run ended, then apply the job's retry policy.

    Returns False, changing nothing, when the execution was settled meanwhile: a late
    report (say, from a worker already declared lost) never flips the outcome."""
    with tracing.continue_trace(
        execution.trace_parent, "execution.finish", **{"hodei.outcome": outcome}
    ):
        return _settle(
            execution=execution,
            worker=worker,
            outcome=outcome,
            exit_code=exit_code,
            error=error,
            log_bytes=log_bytes,
            log_truncated=log_truncated,
        )


def _settle(*, execution, worker, outcome, exit_code, error, log_bytes, log_truncated) -> bool:
    now = clock.now()
    stats = {"log_bytes": log_bytes, "log_truncated": log_truncated}
    common = {"now": now, "exit_code": exit_code, "worker": worker, **stats}
    if outcome == ExecutionStatus.TIMED_OUT:
        changed = execution.time_out(**common)
    elif outcome == ExecutionStatus.CANCELLED:
        changed = execution.confirm_cancelled(error=error, **common)
    elif outcome == ExecutionStatus.FAILED and error:
        changed = execution.fail(error=error, **common)
    elif outcome in (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED):
        changed = execution.finish(**common)
    else:
        raise ValueError(f"{outcome!r} is not an outcome a worker reports")
    if changed:
        execution_retry_if_due(execution=execution)
    return changed


@transaction.atomic
def worker_reap(*, now: datetime | None = None) -> list[Worker]:
    """Mark workers that missed their heartbeats offline and their running executions
    lost (each then retried under the infrastructure budget). Safe to run anywhere, any
    number of times at once: rows are locked and transitions are conditional."""
    now = now or clock.now()
    silence = timedelta(seconds=settings.HODEI_HEARTBEAT_SECONDS * settings.HODEI_MISSED_HEARTBEATS)
    # SKIP LOCKED: a reaper running concurrently takes other rows, not these again.
    dead = list(
        Worker.objects.select_for_update(skip_locked=True)
        .filter(status__in=LIVE_WORKER_STATUSES, last_heartbeat_at__lt=now - silence)
        .order_by("id")
    )
    for worker in dead:
        worker.go_offline(now=now)
        running = Execution.objects.filter(worker=worker, status=ExecutionStatus.RUNNING)
        for execution in running.select_related("job"):
            if execution.lose(now=now, reason=f"Worker {worker.name} stopped heartbeating."):
                execution_retry_if_due(execution=execution)
    return dead


@transaction.atomic
def execution_expire_overdue(*, now: datetime | None = None) -> list[Execution]:
    """Fail running executions past their deadline plus a grace period whose worker has
    gone silent, so nothing stays running forever even if its agent never reports."""
    now = now or clock.now()
    grace = timedelta(seconds=settings.HODEI_TIMEOUT_GRACE_SECONDS)
    silence = timedelta(seconds=settings.HODEI_HEARTBEAT_SECONDS * settings.HODEI_MISSED_HEARTBEATS)
    overdue = Execution.objects.filter(
        status=ExecutionStatus.RUNNING, deadline_at__lt=now - grace
    ).filter(models.Q(worker__isnull=True) | models.Q(worker__last_heartbeat_at__lt=now - silence))
    expired = []
    for execution in overdue.select_related("job"):
        if execution.time_out(now=now):
            execution_retry_if_due(execution=execution)
            expired.append(execution)
    return expired


def execution_retry(*, execution: Execution, trigger: str = Trigger.API) -> Execution:
    """Run a finished execution again as a new attempt (by hand: no budget applies)."""
    if execution.status not in TERMINAL:
        raise InvalidTransition(
            f"Execution is {execution.status}; only a finished one can be retried."
        )
    retry = _enqueue_retry(execution=execution, trigger=trigger, available_at=None)
    if retry is None:
        raise InvalidTransition("Execution was already retried; retry its latest attempt.")
    return retry


def _enqueue_retry(*, execution: Execution, trigger: str, available_at) -> Execution | None:
    """Queue the next attempt; None if one exists already (``retry_of`` is unique, so of
    two racing retries exactly one wins)."""
    if Execution.objects.filter(retry_of=execution).exists():
        return None
    try:
        return execution_enqueue(
            job=execution.job,
            command=execution.command,
            type=execution.type,
            worker_type=execution.worker_type,
            env=execution.env,
            timeout_seconds=execution.timeout_seconds,
            trigger=trigger,
            retry_of=execution,
            available_at=available_at,
        )
    except IntegrityError:
        return None


def execution_retry_if_due(*, execution: Execution) -> Execution | None:
    """Apply the job's retry policy to a settled execution: command failures under the
    job's ``max_retries`` with exponential backoff, lost runs under ``max_lost_retries``
    (an infrastructure budget of its own). Returns the new attempt, if any."""
    job = execution.job
    if execution.cancel_requested:
        return None
    if execution.status == ExecutionStatus.LOST:
        # An ad-hoc execution (no job) still gets the default infrastructure budget.
        budget = job.max_lost_retries if job else DEFAULT_LOST_RETRIES
        if execution.lost_retries_used >= budget:
            return None
        delay = 0.0
    elif execution.status in RETRYABLE and job is not None:
        if execution.retries_used >= job.max_retries:
            return None
        delay = job.retry_delay_seconds * (job.retry_backoff**execution.retries_used)
    else:
        return None
    available_at = clock.now() + timedelta(seconds=delay)
    return _enqueue_retry(execution=execution, trigger=Trigger.RETRY, available_at=available_at)


# -- managed workers ----------------------------------------------------------------


class WorkerStartFailed(Unavailable):
    def __init__(self, managed: ManagedWorker):
        super().__init__(f"Could not start a worker: {managed.failure_reason}")
        self.managed = managed


def managed_worker_start(
    *, type: str, concurrency: int = 1, labels: dict | None = None, provider: str = "local"
) -> ManagedWorker:
    """Start an agent through ``provider`` and wait (a few seconds at most) until it has
    registered as a Worker. Raises Unavailable, with the row left ``failed`` and the
    reason recorded, if it cannot start."""
    managed = ManagedWorker.objects.create(
        name=f"managed-{type}-{uuid7().hex[-12:]}",
        type=type,
        concurrency=concurrency,
        labels=labels or {},
        provider=provider,
    )
    backend = get_provider(provider)
    try:
        launch = backend.start(managed)
    except ProviderError as exc:
        managed.mark_failed(reason=str(exc), now=clock.now())
        raise WorkerStartFailed(managed) from exc
    managed.pid, managed.host = launch.pid, launch.host
    managed.save(update_fields=["pid", "host"])

    deadline = time.monotonic() + settings.HODEI_WORKER_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        worker = Worker.objects.filter(name=managed.name, status=WorkerStatus.ONLINE).first()
        if worker is not None:
            managed.mark_running(pid=launch.pid, host=launch.host, worker=worker, now=clock.now())
            return managed
        if backend.is_alive(managed) is False:
            reason = getattr(backend, "exit_reason", lambda m: "agent exited")(managed)
            managed.mark_failed(reason=reason, now=clock.now())
            raise WorkerStartFailed(managed)
        time.sleep(0.02)
    backend.stop(managed, grace_seconds=1.0)
    reason = f"agent did not register within {settings.HODEI_WORKER_START_TIMEOUT_SECONDS} s"
    managed.mark_failed(reason=reason, now=clock.now())
    raise WorkerStartFailed(managed)


def managed_worker_refresh(*, managed: ManagedWorker) -> ManagedWorker:
    """Make the row tell the truth: an agent whose process died is not running."""
    if managed.status not in MANAGED_LIVE:
        return managed
    alive = get_provider(managed.provider).is_alive(managed)
    if alive is None and managed.worker_id:
        # Another host's agent: its heartbeats speak for it.
        managed.worker.refresh_from_db(fields=["status"])
        alive = managed.worker.status != WorkerStatus.OFFLINE
    if alive is False:
        managed.mark_failed(reason="The agent process exited unexpectedly.", now=clock.now())
    return managed


def managed_worker_stop(*, managed: ManagedWorker) -> ManagedWorker:
    """Stop the agent gracefully (it finishes or cancels its work and goes offline).
    Stopping a stopped worker is harmless."""
    if managed.status not in MANAGED_LIVE:
        return managed
    managed.mark_stopping()
    grace = settings.HODEI_SHUTDOWN_GRACE_SECONDS + settings.HODEI_KILL_GRACE_SECONDS + 2
    try:
        get_provider(managed.provider).stop(managed, grace_seconds=grace)
    except ProviderError as exc:
        raise Unavailable(str(exc)) from exc
    managed.mark_stopped(now=clock.now())
    if managed.worker_id:
        # A graceful agent has done this itself; a killed one could not.
        managed.worker.go_offline(now=clock.now())
    return managed


def managed_workers_stop_local() -> int:
    """Stop every live managed worker of this host (when the worker manager shuts down)."""
    stopped = 0
    for managed in ManagedWorker.objects.filter(
        status__in=MANAGED_LIVE, host=socket.gethostname()
    ).select_related("worker"):
        managed_worker_stop(managed=managed)
        stopped += 1
    return stopped
