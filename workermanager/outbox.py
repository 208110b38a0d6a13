"""The worker manager's events (docs/events.md), written in the transaction of the
change they tell of."""

from events.services import event_emit, event_new, events_emit
from hodei.lib import clock
from workermanager.choices import ExecutionStatus as S
from workermanager.models import Execution, Worker

# An execution's new status -> the event it makes (pending makes none: a pipeline job
# waiting for its needs is the run's business until it is queued).
EXECUTION_EVENT = {
    S.QUEUED: "execution.queued",
    S.RUNNING: "execution.started",
    S.SUCCEEDED: "execution.finished",
    S.FAILED: "execution.finished",
    S.TIMED_OUT: "execution.finished",
    S.EXPIRED: "execution.finished",
    S.SKIPPED: "execution.finished",
    S.LOST: "execution.lost",
    S.CANCELLED: "execution.cancelled",
}


def execution_events(executions: list[Execution]) -> None:
    """The events of many changes, in one INSERT."""
    events_emit([e for e in map(_execution_event, executions) if e is not None])


def _execution_event(execution: Execution):
    kind = EXECUTION_EVENT.get(execution.status)
    if kind is None:
        return None
    return event_new(
        kind,
        subject=("execution", execution.pk),
        ids={
            "execution_id": execution.pk,
            "job_id": execution.job_id,
            "pipeline_run_id": execution.pipeline_run_id,
            "schedule_id": execution.schedule_id,
            "worker_id": execution.worker_id,
        },
        payload={
            "status": execution.status,
            "exit_code": execution.exit_code,
            "error": execution.error,
            "attempt": execution.attempt,
            "trigger": execution.trigger,
            "type": execution.type,
            "worker_type": execution.worker_type,
            "retry_of": str(execution.retry_of_id) if execution.retry_of_id else None,
            "scheduled_for": clock.iso(execution.scheduled_for),
            "created_at": clock.iso(execution.created_at),
            "started_at": clock.iso(execution.started_at),
            "finished_at": clock.iso(execution.finished_at),
            "duration_ms": execution.duration_ms,
        },
    )


def worker_event(worker: Worker, kind: str, *, reason: str = "") -> None:
    event_emit(
        f"worker.{kind}",
        subject=("worker", worker.pk),
        ids={"worker_id": worker.pk},
        payload={
            "name": worker.name,
            "type": worker.type,
            "hostname": worker.hostname,
            "capacity": worker.capacity,
            "isolation": worker.isolation,
            "status": worker.status,
            "reason": reason,
        },
    )
