"""The worker manager's events (docs/events.md), written in the transaction of the
change they tell of."""

from events.models import Event
from events.services import event_emit, event_new, events_emit, events_statement
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


def execution_event_statement(execution: Execution) -> tuple[str, list] | None:
    """The INSERT of one change's event (for ``rows.execute_together``), if it makes one."""
    event = _execution_event(execution)
    return events_statement([event]) if event is not None else None


# An execution event's subject ids and payload: key -> (attribute, kind). One definition
# for both ways an event is built: from an instance in Python (``_execution_event``), and
# from the rows a statement changed, in SQL (``execution_events_sql``: the claim's, the
# settlement's).
EVENT_IDS = {
    "execution_id": "id",
    "job_id": "job_id",
    "pipeline_run_id": "pipeline_run_id",
    "schedule_id": "schedule_id",
    "worker_id": "worker_id",
}
EVENT_PAYLOAD = {
    "status": ("status", "value"),
    "exit_code": ("exit_code", "value"),
    "error": ("error", "value"),
    "attempt": ("attempt", "value"),
    "trigger": ("trigger", "value"),
    "type": ("type", "value"),
    "worker_type": ("worker_type", "value"),
    "retry_of": ("retry_of_id", "text"),
    "scheduled_for": ("scheduled_for", "time"),
    "created_at": ("created_at", "time"),
    "started_at": ("started_at", "time"),
    "finished_at": ("finished_at", "time"),
    "duration_ms": ("duration_ms", "duration"),
}


def _execution_event(execution: Execution):
    kind = EXECUTION_EVENT.get(execution.status)
    if kind is None:
        return None
    return event_new(
        kind,
        subject=("execution", execution.pk),
        ids={key: getattr(execution, attname) for key, attname in EVENT_IDS.items()},
        payload={
            key: _python_value(getattr(execution, attname), how)
            for key, (attname, how) in EVENT_PAYLOAD.items()
        },
    )


def _python_value(value, how: str):
    if how == "time":
        return clock.iso(value)
    if how == "text":
        return str(value) if value is not None else None
    return value


def execution_events_sql(source: str, status: str) -> str:
    """An INSERT of the event of every row of ``source`` (a WITH clause of executions
    that all just moved to ``status``, as their table's columns: those a claim or a
    settlement returns), the same events ``_execution_event`` makes; one parameter: the
    events' time."""
    ids = ", ".join(f"'{key}', {column}::text" for key, column in EVENT_IDS.items())
    payload = ", ".join(
        f"'{key}', {_sql_value(column, how)}" for key, (column, how) in EVENT_PAYLOAD.items()
    )
    return (
        f"INSERT INTO {Event._meta.db_table} (type, subject, subject_ids, payload, created_at) "
        f"SELECT '{EXECUTION_EVENT[status]}', 'execution:' || id::text, "
        f"jsonb_strip_nulls(jsonb_build_object({ids})), jsonb_build_object({payload}), %s "
        f"FROM {source} ORDER BY id"
    )


def _sql_value(column: str, how: str) -> str:
    if how == "time":
        # clock.iso: isoformat() in UTC, "Z" for "+00:00", the fraction only when not 0.
        utc = f"({column} AT TIME ZONE 'UTC')"
        return (
            f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN "
            f"mod(date_part('microseconds', {utc})::bigint, 1000000) = 0 THEN '' "
            f"ELSE to_char({utc}, '.US') END || 'Z'"
        )
    if how == "text":
        return f"{column}::text"
    if how == "duration":  # Execution.duration_ms
        return "trunc(extract(epoch FROM finished_at - started_at) * 1000)::bigint"
    return column


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
