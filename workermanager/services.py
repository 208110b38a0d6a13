"""Workflows on executions: queueing, retrying, settling reports from workers."""

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction

from hodei.exceptions import InvalidInput, InvalidTransition
from hodei.lib import clock
from orchestrator.models import Job
from workermanager.choices import RETRYABLE, TERMINAL, ExecutionStatus, Trigger
from workermanager.models import Execution
from workermanager.notify import notify_queued

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


def execution_cancel(*, execution: Execution) -> Execution:
    execution.request_cancel(now=clock.now())
    return execution


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
