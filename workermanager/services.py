"""The execution lifecycle: every way an execution is created or changes state.

Each function here changes state through one of the model's transitions (conditional
UPDATEs, see ``Execution``), applies the job's retry policy where a run ended, and then
calls ``_changed``: the one place where the side effects of a state change happen, for
every transition (the job's status mirror, metrics, and the hooks of higher layers such
as pipeline runs and events). Nothing else calls the transitions."""

from collections.abc import Iterable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, models, transaction

from hodei.exceptions import InvalidInput, InvalidTransition
from hodei.lib import clock, rows
from orchestrator.models import RUN_SETTINGS, Job
from telemetry import metrics, tracing
from workermanager import hooks, outbox
from workermanager.choices import RETRYABLE, TERMINAL, ExecutionStatus, Trigger
from workermanager.models import Execution, ExecutionLog, Worker
from workermanager.notify import notify_cancel, notify_queued, notify_queued_statement

S = ExecutionStatus
DEFAULT_LOST_RETRIES = Job._meta.get_field("max_lost_retries").default


def execution_enqueue(
    *,
    job: Job | None = None,
    command: str | None = None,
    type: str | None = None,
    worker_type: str | None = None,
    priority: int | None = None,
    env: dict | None = None,
    timeout_seconds: int | None = None,
    network: str | None = None,
    memory_limit_mb: int | None = None,
    pids_limit: int | None = None,
    cpu_limit: float | None = None,
    with_secrets: bool = True,
    trigger: str = Trigger.API,
    pipeline_run=None,
    pending: bool = False,
    schedule=None,
    scheduled_for: datetime | None = None,
    retry_of: Execution | None = None,
    available_at: datetime | None = None,
) -> Execution:
    """Queue an execution. The job, if any, supplies every default; the arguments given
    override them. An empty command is a valid no-op that succeeds at once.

    A command given for a job overrides the job's: that execution receives the job's
    secret variables only ``with_secrets`` (the caller decides who may: see
    accounts.permissions). A job of a ``pipeline_run`` starts ``pending`` when it must
    wait for others (it is released by execution_release)."""
    if job is None and not command:
        raise InvalidInput(
            "Nothing to run: give a job_id or a command.",
            fields={"command": ["Required when no job_id is given."]},
        )
    # Queued on its own (the API's POST): the INSERT, the job's status, the event and the
    # NOTIFY as one statement (_enqueue_alone). Not a pipeline run's job (its hooks make
    # conditional transitions), nor a schedule's slot or a retry (their uniqueness is
    # the caller's to catch, at the INSERT): those in a transaction, statement by
    # statement.
    alone = pipeline_run is None and schedule is None and retry_of is None
    with (
        nullcontext() if alone else transaction.atomic(),
        tracing.tracer.start_as_current_span("execution.enqueue") as span,
    ):
        given = {
            "command": command,
            "type": type,
            "worker_type": worker_type,
            "priority": priority,
            "timeout_seconds": timeout_seconds,
            "network": network,
            "memory_limit_mb": memory_limit_mb,
            "pids_limit": pids_limit,
            "cpu_limit": cpu_limit,
        }
        execution = Execution(
            job=job,
            **{name: _default(name, value, job) for name, value in given.items()},
            env={**(job.env if job else {}), **(env or {})},
            own_command=command is not None and (job is None or command != job.command),
            trigger=trigger,
            pipeline_run=pipeline_run,
            status=S.PENDING if pending else S.QUEUED,
            schedule=schedule,
            scheduled_for=scheduled_for,
        )
        execution.with_secrets = with_secrets or not execution.own_command
        execution.trace_id, execution.trace_parent = tracing.current_ids()
        if retry_of is not None:
            _continue_budgets(execution, retry_of=retry_of, trigger=trigger)
        # The clock is read last, just before the row is written: created_at is when the
        # row was created (as procrastinate's is its INSERT's now()), not when building
        # the execution began.
        now = clock.now()
        execution.created_at, execution.available_at = now, available_at or now
        if not execution.command.strip() and not pending:
            # Nothing to run (an empty build, as in Jenkins): done without a worker.
            execution.status, execution.exit_code = S.SUCCEEDED, 0
            execution.started_at = execution.finished_at = now
        span.set_attribute("hodei.execution_id", str(execution.id))
        if alone:
            _enqueue_alone(execution)
            return execution
        rows.insert(execution)  # the ORM's save(force_insert=True), cheaper
        if execution.status == S.QUEUED:
            notify_queued(execution.worker_type, execution.id)
        _changed(execution)
        return execution


def _enqueue_alone(execution: Execution) -> None:
    """Store an execution queued on its own: its INSERT, its job's status, its event and
    its NOTIFY as one statement (rows.execute_together), so one round trip and, outside
    a caller's transaction, one transaction with no BEGIN or COMMIT to wait for. Then
    what follows (``_announce``)."""
    statements = [rows.insert_statement(execution)]
    if execution.job_id:
        statements.append(_mirror_statement(execution))
    statements.append(outbox.execution_event_statement(execution))
    if execution.status == S.QUEUED:
        statements.append(notify_queued_statement(execution.worker_type, execution.id))
    rows.execute_together([s for s in statements if s is not None])
    rows.inserted(execution)
    _announce([execution])


def _default(name: str, given, job: Job | None):
    if given is not None:
        return given
    if job is not None:
        return getattr(job, name)
    return Execution._meta.get_field(name).get_default()


def _continue_budgets(execution: Execution, *, retry_of: Execution, trigger: str) -> None:
    execution.retry_of = retry_of
    execution.attempt = retry_of.attempt + 1
    execution.retries_used = retry_of.retries_used
    execution.lost_retries_used = retry_of.lost_retries_used
    if retry_of.status == S.LOST:
        execution.lost_retries_used += 1
    elif trigger == Trigger.RETRY:
        execution.retries_used += 1


def executions_claim(*, worker: Worker, limit: int, only_online: bool = False) -> list[Execution]:
    """queued -> running: up to ``limit`` executions that ``worker`` may run, oldest
    first, each exactly once however many agents claim at the same time (with
    ``only_online``, none unless the worker is online: ``Execution.claim``). A claimed
    execution of a job may carry its job's stored secret variables, read with the
    claim, as ``stored_secret_env`` (agent_protocol.assignments)."""
    # Usually one statement and one round trip (_claim_alone). While a job has a
    # concurrency limit, or a pipeline run's job is queued: a transaction, with the
    # runs' hooks.
    if Execution.claims_in_one_statement():
        claimed = _claim_alone(worker=worker, limit=limit, only_online=only_online)
        if claimed is not None:
            return claimed
    with transaction.atomic(), ExitStack() as spans:
        claimed = Execution.claim(
            worker=worker, limit=limit, now=clock.now(), only_online=only_online
        )
        for execution in claimed:
            if execution.trace_parent:
                spans.enter_context(
                    tracing.continue_trace(
                        execution.trace_parent, "execution.claim", **{"hodei.worker": worker.name}
                    )
                )
        _changed_many(claimed)
    return claimed


def _claim_alone(*, worker: Worker, limit: int, only_online: bool) -> list[Execution] | None:
    """The claim as one statement (PostgreSQL, while no job has a concurrency limit):
    the UPDATE, the started events, the jobs' statuses and the jobs' secret variables
    for the agent, in one round trip that is a transaction of its own (no BEGIN, no
    COMMIT). None, having claimed nothing, while a pipeline run's job is queued for
    this worker: those are claimed in a transaction that runs the runs' hooks."""
    now = clock.now()
    table, jobs = Execution._meta.db_table, Job._meta.db_table
    update, update_params = Execution.claim_statement(
        worker=worker,
        limit=limit,
        now=now,
        only_online=only_online,
        unless="SELECT run FROM waiting",
    )
    columns = len(Execution._meta.concrete_fields)
    sql = f"""
        WITH waiting AS (SELECT EXISTS (
                SELECT 1 FROM {table} WHERE status = %s AND pipeline_run_id IS NOT NULL
                    AND available_at <= %s AND worker_type IN ('', %s)) AS run),
            claimed AS ({update} RETURNING {rows.select_list(Execution)}),
            events AS ({outbox.execution_events_sql("claimed", S.RUNNING)}),
            mirrored AS ({_mirror_sql(_newest_per_job("claimed"))})
        SELECT claimed.*, j.secret_env FROM claimed LEFT JOIN {jobs} AS j ON j.id = claimed.job_id
        {_refusal_row("waiting", "run", columns + 1)}"""
    found = _rows_unless_refused(sql, [S.QUEUED, now, worker.type, *update_params, now, S.RUNNING])
    if found is None:
        return None
    claimed = rows.from_rows(Execution, found)
    secret_env = Job._meta.get_field("secret_env")
    for execution, row in zip(claimed, found, strict=True):
        if execution.job_id:
            execution.stored_secret_env = secret_env.from_db_value(row[columns], None, connection)
    claimed.sort(key=lambda e: e.id)
    answered = clock.now()
    for execution in claimed:
        tracing.record_span(
            execution.trace_parent,
            "execution.claim",
            start=now,
            end=answered,
            **{"hodei.worker": worker.name},
        )
    _announce(claimed)
    return claimed


@transaction.atomic
def execution_settle(
    *,
    execution: Execution,
    worker: Worker | None,
    status: str,
    exit_code: int | None = None,
    error: str = "",
    log_bytes: int | None = None,
    log_truncated: bool | None = None,
    outputs: dict[str, str] | None = None,
) -> bool:
    """Record how a run ended (one of ``WORKER_OUTCOMES``), as its worker reports it (or
    the control plane, with ``worker=None``), then apply the job's retry policy.

    Returns False, changing nothing, when the execution was settled meanwhile: a late
    report (say, from a worker already declared lost) never flips the outcome."""
    with tracing.continue_trace(
        execution.trace_parent, "execution.finish", **{"hodei.status": status}
    ):
        settled = execution.settle(
            status=status,
            now=clock.now(),
            worker=worker,
            exit_code=exit_code,
            error=error,
            log_bytes=log_bytes,
            log_truncated=log_truncated,
            outputs=outputs,
        )
        if settled:
            _ended(execution)
        return settled


@transaction.atomic(savepoint=False)
def executions_settle(*, worker: Worker, reports: list[dict]) -> list[Execution]:
    """``execution_settle`` for many runs of ``worker`` at once (an agent reports every
    run that ended in one turn of its loop): one conditional UPDATE for all, the retry
    policy applied to those that moved, their side effects together. Each report is
    ``execution_settle``'s keywords plus ``execution_id``. Returns the executions that
    moved; a late report changes nothing. No savepoint of its own: a caller's
    transaction (which may refuse the batch) commits or rolls back all of it."""
    settled = Execution.settle_many(worker=worker, reports=reports, now=clock.now())
    for execution in settled:
        with tracing.continue_trace(
            execution.trace_parent, "execution.finish", **{"hodei.status": execution.status}
        ):
            _retry_if_due(execution)
    _changed_many(settled)
    return settled


def executions_settle_alone(*, worker: Worker, reports: list[dict]) -> list[Execution] | None:
    """``executions_settle`` as one statement, for what needs nothing more (PostgreSQL,
    every run succeeded: no retry policy to apply): the UPDATE, the events and the jobs'
    statuses in one round trip that is a transaction of its own. Returns the executions
    that moved; None, having settled nothing, when it cannot tell the whole story: a
    report on an execution that is not this worker's (the transaction refuses the
    batch), or one of a pipeline run's (its hooks run in the transaction)."""
    if connection.vendor != "postgresql" or any(r["status"] != S.SUCCEEDED for r in reports):
        return None
    now = clock.now()
    table = Execution._meta.db_table
    values, values_params = Execution.settle_values(reports)
    update, update_params = Execution.settle_statement(
        worker=worker, source="reported", now=now, unless="SELECT b FROM blocked"
    )
    columns = len(Execution._meta.concrete_fields)
    sql = f"""
        WITH reported({Execution.SETTLE_COLUMNS}) AS ({values}),
            blocked AS (SELECT EXISTS (
                SELECT 1 FROM reported r LEFT JOIN {table} x ON x.id = r.id AND x.worker_id = %s
                WHERE x.id IS NULL OR x.pipeline_run_id IS NOT NULL) AS b),
            settled AS ({update} RETURNING {rows.select_list(Execution, "e")}),
            events AS ({outbox.execution_events_sql("settled", S.SUCCEEDED)}),
            mirrored AS ({_mirror_sql(_newest_per_job("settled"))})
        SELECT * FROM settled
        {_refusal_row("blocked", "b", columns)}"""
    params = [*values_params, worker.pk, *update_params, now, S.SUCCEEDED]
    found = _rows_unless_refused(sql, params)
    if found is None:
        return None
    settled = sorted(rows.from_rows(Execution, found), key=lambda e: e.id)
    for execution in settled:
        tracing.record_span(
            execution.trace_parent,
            "execution.finish",
            start=now,
            end=now,
            **{"hodei.status": execution.status},
        )
    _announce(settled)
    return settled


@transaction.atomic
def execution_cancel(*, execution: Execution) -> Execution:
    """Cancel: one that has not started ends at once; a running one is killed by its
    worker within a second. 409 once it has finished."""
    if execution.cancel(now=clock.now()):
        _changed(execution)
    else:
        # Its worker looks for cancellations every half second; this makes it immediate.
        notify_cancel(execution.id)
    return execution


@transaction.atomic
def execution_release(*, execution: Execution, env: dict | None = None) -> bool:
    """pending -> queued (a pipeline run's job whose upstream jobs are done), with
    ``env`` added to its variables (what those jobs output). An empty command succeeds
    at once, as a queued one does."""
    if not execution.release(env={**execution.env, **(env or {})}):
        return False
    if not execution.command.strip():
        execution.succeed_without_worker(now=clock.now())
    else:
        notify_queued(execution.worker_type, execution.id)
    _changed(execution)
    return True


def executions_release(*, releases: list[tuple[Execution, dict]]) -> list[Execution]:
    """Release many pending executions at once (the jobs a finished job let go, a fan-out
    of a thousand): those without added variables in one UPDATE, one NOTIFY per worker
    type, one INSERT of their events; the others one by one. Returns those this call
    released (a cancel may have taken some first). The caller holds its run's lock."""
    now = clock.now()
    plain = [e for e, env in releases if not env and e.command.strip()]
    released = []
    if plain:
        released += Execution.release_many(plain, now=now)
        for worker_type in {e.worker_type for e in released}:
            notify_queued(worker_type)
        _changed_many(released)
    for execution, env in releases:
        special = env or not execution.command.strip()
        if special and execution_release(execution=execution, env=env):
            released.append(execution)
    return released


@transaction.atomic
def execution_skip(*, execution: Execution, reason: str) -> bool:
    """pending -> skipped (a pipeline run's job whose upstream job failed)."""
    if not execution.skip(now=clock.now(), reason=reason):
        return False
    _changed(execution)
    return True


@transaction.atomic
def executions_lose(
    *,
    worker: Worker,
    now: datetime,
    reason: str,
    started_before: datetime | None = None,
    keep: Iterable[str] = (),
) -> list[Execution]:
    """running -> lost for every execution of a worker that went silent (or only those
    started before ``started_before`` and not in ``keep``: what its agent says it does
    not run); each is retried under the job's infrastructure budget."""
    lost = []
    running = Execution.objects.filter(worker=worker, status=S.RUNNING).select_related("job")
    if started_before is not None:
        running = running.filter(started_at__lt=started_before)
    if keep:
        running = running.exclude(id__in=list(keep))
    for execution in running:
        if execution.lose(now=now, reason=reason):
            _ended(execution)
            lost.append(execution)
    return lost


@transaction.atomic
def executions_expire_overdue(*, now: datetime | None = None) -> list[Execution]:
    """Time out running executions past their deadline plus a grace period whose worker
    has gone silent, so nothing stays running forever even if its agent never reports."""
    now = now or clock.now()
    grace = timedelta(seconds=settings.HODEI_TIMEOUT_GRACE_SECONDS)
    overdue = Execution.objects.filter(status=S.RUNNING, deadline_at__lt=now - grace).filter(
        models.Q(worker__isnull=True) | models.Q(worker__last_heartbeat_at__lt=now - silence())
    )
    expired = []
    for execution in overdue.select_related("job"):
        if execution_settle(execution=execution, worker=None, status=S.TIMED_OUT):
            expired.append(execution)
    return expired


@transaction.atomic
def executions_expire_unclaimed(*, now: datetime | None = None) -> list[Execution]:
    """queued -> expired: what no worker took within HODEI_QUEUED_EXPIRY_SECONDS of being
    due (no worker of its type, say, or a worker type nobody runs). It is not left to
    wait forever, and it says why."""
    now = now or clock.now()
    limit = timedelta(seconds=settings.HODEI_QUEUED_EXPIRY_SECONDS)
    stale = Execution.objects.filter(status=S.QUEUED, available_at__lt=now - limit)
    expired = []
    for execution in stale.select_related("job")[:1000]:
        kind = f"of type {execution.worker_type!r}" if execution.worker_type else ""
        reason = f"No worker {kind} took it within {_duration(limit)}.".replace("  ", " ")
        if execution.expire(now=now, reason=reason):
            _changed(execution)
            expired.append(execution)
    return expired


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def silence() -> timedelta:
    """How long a worker may go without a heartbeat before it counts as gone."""
    return timedelta(seconds=settings.HODEI_HEARTBEAT_SECONDS * settings.HODEI_MISSED_HEARTBEATS)


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


def _ended(execution: Execution) -> None:
    """A run ended: its retry (if due) is queued before anyone hears of the end, so a
    listener sees whether the job goes on."""
    _retry_if_due(execution)
    _changed(execution)


def _retry_if_due(execution: Execution) -> Execution | None:
    """Apply the job's retry policy to a settled execution: command failures under the
    job's ``max_retries`` with exponential backoff, lost runs under ``max_lost_retries``
    (an infrastructure budget of its own)."""
    if execution.cancel_requested or execution.status not in RETRYABLE | {S.LOST}:
        return None  # before reading the job: most runs succeed
    job = execution.job
    if execution.status == S.LOST:
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


def _enqueue_retry(*, execution: Execution, trigger: str, available_at) -> Execution | None:
    """Queue the next attempt; None if one exists already (``retry_of`` is unique, so of
    two racing retries exactly one wins)."""
    if Execution.objects.filter(retry_of=execution).exists():
        return None
    try:
        with transaction.atomic():
            return execution_enqueue(
                job=execution.job,
                env=execution.env,
                with_secrets=execution.with_secrets,
                pipeline_run=execution.pipeline_run,
                **{name: getattr(execution, name) for name in RUN_SETTINGS},
                trigger=trigger,
                retry_of=execution,
                available_at=available_at,
            )
    except IntegrityError:
        return None


def _changed(execution: Execution) -> None:
    """The side effects of every state change, after the change, in its transaction."""
    _changed_many([execution])


def _count(execution: Execution) -> None:
    if execution.status == S.RUNNING:
        metrics.execution_claimed(execution)
    elif execution.status in TERMINAL:
        metrics.execution_finished(execution)


# Up to this many jobs, a batch mirrors each job's status with its own conditional
# UPDATE; past it (a fan-out), in one read and an UPDATE per status.
MIRROR_ONE_BY_ONE = 8


def _changed_many(executions: list[Execution]) -> None:
    """The side effects of the state changes of executions that changed together (one,
    one claim, the runs an agent settles in one report, a fan-out released): the jobs'
    statuses in a few statements, the events in one INSERT, then ``_announce``."""
    if not executions:
        return
    newest: dict = {}  # job -> its newest execution among these
    for e in executions:
        if e.job_id and (e.job_id not in newest or e.pk > newest[e.job_id].pk):
            newest[e.job_id] = e
    if len(newest) <= MIRROR_ONE_BY_ONE:
        for execution in newest.values():
            _mirror_status_to_job(execution)
    else:
        current = dict(
            Job.objects.filter(pk__in=list(newest))
            .annotate(
                newest=models.Subquery(
                    Execution.objects.filter(job_id=models.OuterRef("pk"))
                    .order_by("-id")
                    .values("id")[:1]
                )
            )
            .values_list("pk", "newest")
        )
        by_status: dict = {}
        for job, e in newest.items():
            if current.get(job) == e.pk:
                by_status.setdefault(e.status, []).append(job)
        for status, jobs in by_status.items():
            Job.objects.filter(pk__in=jobs).update(status=status)
    outbox.execution_events(executions)
    _announce(executions)


def _announce(executions: list[Execution]) -> None:
    """What follows changes once their rows are written (the executions', the jobs'
    statuses, the events: ``_changed_many``, or the one statement of ``_enqueue_alone``
    and ``_claim_alone``): the metrics, then the hooks of higher layers."""
    for execution in executions:
        _count(execution)
    for execution in executions:
        hooks.execution_changed.fire(execution)


def _mirror_status_to_job(execution: Execution) -> None:
    rows.execute(*_mirror_statement(execution))


def _mirror_statement(execution: Execution) -> tuple[str, list]:
    """A job's status is its newest execution's (ids sort by creation): ``execution``'s
    status, unless the job has a newer one."""
    job_id = Job._meta.pk.get_db_prep_value(execution.job_id, connection)
    execution_id = Execution._meta.pk.get_db_prep_value(execution.id, connection)
    return _mirror_sql("SELECT %s AS job_id, %s AS id"), [execution.status, job_id, execution_id]


def _newest_per_job(source: str) -> str:
    """(job_id, id) of the newest execution of each job among the rows of ``source`` (a
    WITH clause of executions that just changed together), for ``_mirror_sql``."""
    return (
        f"SELECT DISTINCT ON (job_id) job_id, id FROM {source} "
        "WHERE job_id IS NOT NULL ORDER BY job_id, id DESC"
    )


def _refusal_row(source: str, flag: str, columns: int) -> str:
    """The end of a one-statement change guarded by ``flag`` (a boolean of the WITH
    clause ``source`` that, when true, made it change nothing): one row of NULLs then,
    which ``_rows_unless_refused`` reads as "take the transaction instead"."""
    return f"UNION ALL SELECT {', '.join(['NULL'] * columns)} FROM {source} WHERE {flag}"


def _rows_unless_refused(sql: str, params: list) -> list[tuple] | None:
    """The rows a guarded one-statement change returned; None when its guard refused
    (``_refusal_row``) and nothing changed."""
    found = rows.fetch_all(sql, params)
    return None if any(row[0] is None for row in found) else found


def _mirror_sql(newest: str) -> str:
    """``_mirror_statement`` for the executions ``newest`` selects (job_id, id; one per
    job, its newest among those that changed), all now in the status of the one
    parameter that comes first."""
    return (
        f"UPDATE {Job._meta.db_table} AS j SET status = %s FROM ({newest}) AS c "
        f"WHERE j.id = c.job_id AND NOT EXISTS (SELECT 1 FROM {Execution._meta.db_table} "
        "AS n WHERE n.job_id = c.job_id AND n.id > c.id)"
    )


# -- output ------------------------------------------------------------------------


@dataclass(frozen=True)
class LogChunk:
    """A piece of an execution's output, as an agent hands it over."""

    seq: int
    stream: str
    message: str
    created_at: float  # wall-clock seconds


def execution_logs_store(*, chunks: list[tuple[object, LogChunk]]) -> int:
    """Store output chunks, given as (execution id, chunk) pairs (a LogChunk or any object
    with the same attributes, such as the agent's own), in one INSERT. A chunk
    already stored (a resend after a failed flush) is skipped, never duplicated or
    reordered. Returns the bytes of output handed over."""
    if connection.vendor == "postgresql":
        _insert_log_rows(chunks)
    else:
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
    stored = sum(len(chunk.message.encode()) for _, chunk in chunks)
    if stored:
        metrics.inc("hodei_log_bytes_stored_total", stored)
    return stored


LOG_ROWS_PER_INSERT = 100


def _insert_log_rows(chunks: list) -> None:
    """The log rows in multi-row INSERTs with server-side parameters (psycopg's own
    cursor on Django's connection, so in its transaction). Django's cursor binds on the
    client: it escapes every character of a 64 KiB message into the SQL text (and
    bulk_create into an array literal, in Python), which was most of an agent's time
    when a command prints fast; bound parameters go as they are. ON CONFLICT DO NOTHING:
    a chunk sent again after a failed attempt is skipped, never duplicated."""
    table = ExecutionLog._meta.db_table
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        for start in range(0, len(chunks), LOG_ROWS_PER_INSERT):
            batch = chunks[start : start + LOG_ROWS_PER_INSERT]
            params = []
            for execution_id, chunk in batch:
                params += [
                    str(execution_id),
                    chunk.seq,
                    chunk.stream,
                    chunk.message,
                    datetime.fromtimestamp(chunk.created_at, tz=UTC),
                ]
            values = ", ".join(["(%s::uuid, %s, %s, %s, %s)"] * len(batch))
            cursor.execute(
                f"INSERT INTO {table} (execution_id, seq, stream, message, created_at) "
                f"VALUES {values} ON CONFLICT DO NOTHING",
                params,
            )
