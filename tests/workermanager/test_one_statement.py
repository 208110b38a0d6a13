"""The API's enqueue and the agents' claim, each one statement on PostgreSQL (one round
trip, a transaction of its own): everything the statement-by-statement versions write
(the row, the job's status, the event, the NOTIFY, the secrets for the agent) is
written, together, and the events are the same as those built in Python."""

import json
import select
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from events.models import Event
from hodei.exceptions import Forbidden
from hodei.lib import clock, rows
from hodei.lib.listen import Listener
from telemetry import metrics
from tests.factories import JobFactory, WorkerFactory
from workermanager import agent_protocol, outbox, services
from workermanager.choices import ExecutionStatus as S
from workermanager.models import Execution
from workermanager.notify import CHANNEL

pytestmark = pytest.mark.django_db(transaction=True)
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="one statement is PostgreSQL's"
)


def events_of(execution) -> list[Event]:
    return list(Event.objects.filter(subject=f"execution:{execution.pk}").order_by("id"))


def as_stored(value: dict) -> dict:
    return json.loads(json.dumps(value))


def test_an_execution_queued_alone_stores_its_row_job_status_and_event():
    job = JobFactory(status="succeeded")
    with CaptureQueriesContext(connection) as queries:
        execution = services.execution_enqueue(job=job, command="echo hi")
    if connection.vendor == "postgresql":
        assert len(queries) == 1, [q["sql"][:80] for q in queries]  # no BEGIN, no COMMIT
    stored = Execution.objects.get(pk=execution.pk)
    assert (stored.status, stored.command, stored.job_id) == (S.QUEUED, "echo hi", job.pk)
    job.refresh_from_db()
    assert job.status == S.QUEUED
    [event] = events_of(execution)
    assert event.type == "execution.queued"
    assert event.payload["status"] == S.QUEUED
    assert execution._state.adding is False


@on_postgresql
def test_the_one_statement_enqueue_notifies_on_its_own_commit():
    listener = Listener([CHANNEL])
    listener.start()
    try:
        execution = services.execution_enqueue(command="true", worker_type="gpu")
        assert select.select([listener.fileno()], [], [], 5)[0]
        assert ("hodei_executions", f"gpu {execution.pk}") in listener.drain()
    finally:
        listener.close()


@on_postgresql
def test_a_failing_part_stores_nothing():
    # The statements are one: when one part fails (here the INSERT, a duplicate id),
    # neither the event nor the NOTIFY of the others is kept.
    first = services.execution_enqueue(command="true")
    again = Execution(**{f.attname: getattr(first, f.attname) for f in Execution._meta.fields})
    statements = [
        rows.insert_statement(again),
        outbox.execution_event_statement(again),
    ]
    with pytest.raises(Exception, match="duplicate key"):
        rows.execute_together(statements)
    assert len(events_of(first)) == 1


@on_postgresql
def test_the_claim_is_one_statement_with_the_same_event_as_python_builds(monkeypatch):
    job = JobFactory(secret_env={"TOKEN": "s3cret"}, status="succeeded")
    earlier = services.execution_enqueue(command="true")  # no job: ids left out
    execution = services.execution_enqueue(job=job, env={"A": "1"}, timeout_seconds=30)
    worker = WorkerFactory()
    Execution.claims_in_one_statement()  # whether jobs have limits: read once a second
    monkeypatch.setattr(metrics.buffer, "batched", True)  # as in an agent
    # A whole second: clock.iso leaves out the fraction, and so must the SQL.
    monkeypatch.setattr(clock, "now", lambda: datetime(2030, 1, 2, 15, 0, 1, tzinfo=UTC))
    with CaptureQueriesContext(connection) as queries:
        claimed = agent_protocol.agent_claim(worker=worker, limit=5)
    assert len(queries) == 1, [q["sql"][:80] for q in queries]
    assert [a["id"] for a in claimed] == [str(earlier.pk), str(execution.pk)]
    assert claimed[1]["secret_env"] == {"TOKEN": "s3cret"}
    assert claimed[1]["env"] == {"A": "1"}
    job.refresh_from_db()
    assert job.status == S.RUNNING
    for one in (earlier, execution):
        row = Execution.objects.get(pk=one.pk)
        assert (row.status, row.worker_id) == (S.RUNNING, worker.pk)
        assert row.started_at == clock.now()
        started = events_of(one)[-1]
        expected = outbox._execution_event(row)
        assert started.type == expected.type == "execution.started"
        assert started.subject == expected.subject
        assert started.subject_ids == as_stored(expected.subject_ids)
        assert started.payload == as_stored(expected.payload)
        assert started.payload["started_at"] == "2030-01-02T15:00:01Z"


@on_postgresql
def test_the_sql_event_writes_fractions_as_python_does(monkeypatch):
    services.execution_enqueue(command="true")
    monkeypatch.setattr(clock, "now", lambda: datetime(2030, 1, 2, 15, 0, 1, 5, tzinfo=UTC))
    [execution] = services.executions_claim(worker=WorkerFactory(), limit=1)
    started = events_of(execution)[-1]
    assert started.payload["started_at"] == "2030-01-02T15:00:01.000005Z"
    assert started.payload == as_stored(outbox._execution_event(execution).payload)


@on_postgresql
def test_a_claim_in_a_callers_transaction_is_part_of_it():
    services.execution_enqueue(command="true")
    with transaction.atomic():
        [execution] = services.executions_claim(worker=WorkerFactory(), limit=1)
        transaction.set_rollback(True)
    assert Execution.objects.get(pk=execution.pk).status == S.QUEUED
    assert [e.type for e in events_of(execution)] == ["execution.queued"]


@on_postgresql
def test_hot_statements_are_prepared_on_the_server():
    services.execution_enqueue(command="true")
    services.executions_claim(worker=WorkerFactory(), limit=1)
    prepared = [s for (s,) in rows.fetch_all("SELECT statement FROM pg_prepared_statements", [])]
    assert any(s.lstrip().startswith("WITH waiting") for s in prepared)
    assert any(s.startswith('WITH s0 AS (INSERT INTO "workermanager_execution"') for s in prepared)


@on_postgresql
def test_a_connection_that_died_while_idle_is_replaced_by_the_first_statement():
    rows.execute("SELECT 1", [])
    pid = connection.connection.info.backend_pid
    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    import psycopg

    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    # A new request: Django would check the connection before its first query.
    connection.health_check_done = False
    with CaptureQueriesContext(connection):
        [(one,)] = rows.fetch_all("SELECT 1", [])
    assert one == 1
    assert connection.connection.info.backend_pid != pid
    assert connection.health_check_done  # no SELECT 1 of Django's before the next query


def test_a_plain_enqueue_and_a_claim_are_whole_with_their_events():
    """The API's enqueue and an agent's claim: each change is stored with its event, on
    PostgreSQL in one statement, as on SQLite in a transaction."""
    execution = services.execution_enqueue(command="echo hi", type="bash")
    worker = WorkerFactory()
    [claimed] = services.executions_claim(worker=worker, limit=4, only_online=True)

    assert claimed.pk == execution.pk
    stored = Execution.objects.get(pk=execution.pk)
    assert (stored.status, stored.worker_id) == (S.RUNNING, worker.pk)
    assert [e.type for e in events_of(execution)] == ["execution.queued", "execution.started"]


def test_requests_one_after_another_each_enqueue(wm):
    """POST /api/v1/execute again and again on one connection (the statements prepared
    by the earlier requests in place), as under gunicorn."""
    ids = []
    for _ in range(4):
        response = wm.post("/api/v1/execute", {"command": "true"}, format="json")
        assert response.status_code == 201, response.content
        ids.append(response.json()["id"])
    assert Execution.objects.filter(pk__in=ids, status=S.QUEUED).count() == 4
    assert Event.objects.filter(type="execution.queued").count() == 4


@on_postgresql
def test_while_a_pipeline_runs_job_is_queued_the_claim_runs_its_hooks_in_a_transaction():
    from pipelines.services import pipeline_run_start
    from tests.factories import PipelineFactory

    alone = services.execution_enqueue(command="true")
    pipeline = PipelineFactory()
    job = JobFactory(pipeline=pipeline, command="true")
    run = pipeline_run_start(pipeline=pipeline)
    worker = WorkerFactory()
    assert services._claim_alone(worker=worker, limit=5, only_online=False) is None
    assert Execution.objects.get(pk=alone.pk).status == S.QUEUED  # it claimed nothing

    claimed = services.executions_claim(worker=worker, limit=5)
    assert {e.job_id for e in claimed} == {None, job.pk}
    run.refresh_from_db()
    assert run.status == "running"  # the run's hook, in the claim's transaction
    assert run.started_at is not None


def claimed_by(worker, *executions):
    claimed = services.executions_claim(worker=worker, limit=len(executions))
    assert {e.pk for e in claimed} == {e.pk for e in executions}
    return claimed


def succeeded(execution, **more) -> dict:
    return {"execution_id": execution.pk, "status": S.SUCCEEDED, "exit_code": 0, **more}


@on_postgresql
def test_runs_that_succeeded_settle_in_one_statement_with_the_events_python_builds(
    monkeypatch,
):
    job = JobFactory(status="succeeded")
    plain = services.execution_enqueue(command="true")
    of_job = services.execution_enqueue(job=job)
    worker = WorkerFactory()
    claimed_by(worker, plain, of_job)
    monkeypatch.setattr(metrics.buffer, "batched", True)  # as in an agent
    metrics.buffer.take()
    monkeypatch.setattr(clock, "now", lambda: datetime(2030, 1, 2, 15, 0, 2, 5, tzinfo=UTC))
    with CaptureQueriesContext(connection) as queries:
        answer = agent_protocol.agent_settle_reporting(
            worker=worker,
            reports=[succeeded(plain, log_bytes=5, outputs={"V": "1"}), succeeded(of_job)],
        )
    assert len(queries) == 1, [q["sql"][:80] for q in queries]  # no BEGIN, no COMMIT
    assert answer == [(True, S.SUCCEEDED), (True, S.SUCCEEDED)]
    job.refresh_from_db()
    assert job.status == S.SUCCEEDED
    for one in (plain, of_job):
        row = Execution.objects.get(pk=one.pk)
        assert (row.status, row.exit_code, row.finished_at) == (S.SUCCEEDED, 0, clock.now())
        finished = events_of(one)[-1]
        expected = outbox._execution_event(row)
        assert finished.type == expected.type == "execution.finished"
        assert finished.subject_ids == as_stored(expected.subject_ids)
        assert finished.payload == as_stored(expected.payload)
    assert Execution.objects.get(pk=plain.pk).outputs == {"V": "1"}
    counted = metrics.buffer.take()
    key = ("hodei_executions_finished_total", "status=succeeded,type=bash")
    assert counted[key] == 2


@on_postgresql
def test_a_late_report_among_them_is_ignored_and_answered_with_the_status_now():
    worker = WorkerFactory()
    lost, fresh = (services.execution_enqueue(command="true") for _ in range(2))
    claimed_by(worker, lost, fresh)
    Execution.objects.filter(pk=lost.pk).update(status=S.LOST)
    answer = agent_protocol.agent_settle_reporting(
        worker=worker, reports=[succeeded(lost), succeeded(fresh)]
    )
    assert answer == [(False, S.LOST), (True, S.SUCCEEDED)]
    assert [e.type for e in events_of(lost)] == ["execution.queued", "execution.started"]


@on_postgresql
def test_a_report_on_another_workers_execution_settles_nothing_of_the_batch():
    mine, theirs = (services.execution_enqueue(command="true") for _ in range(2))
    worker, other = WorkerFactory(), WorkerFactory()
    claimed_by(worker, mine)
    claimed_by(other, theirs)
    assert services.executions_settle_alone(worker=worker, reports=[succeeded(mine)]) != []
    again = services.execution_enqueue(command="true")
    claimed_by(worker, again)
    with pytest.raises(Forbidden):
        agent_protocol.agent_settle_reporting(
            worker=worker, reports=[succeeded(again), succeeded(theirs)]
        )
    assert Execution.objects.get(pk=again.pk).status == S.RUNNING
    assert Execution.objects.get(pk=theirs.pk).status == S.RUNNING


@on_postgresql
def test_a_pipeline_runs_job_settles_in_a_transaction_that_runs_its_hooks():
    from pipelines.services import pipeline_run_start
    from tests.factories import PipelineFactory

    pipeline = PipelineFactory()
    JobFactory(pipeline=pipeline, command="true")
    run = pipeline_run_start(pipeline=pipeline)
    worker = WorkerFactory()
    [execution] = services.executions_claim(worker=worker, limit=1)
    reports = [succeeded(execution)]
    assert services.executions_settle_alone(worker=worker, reports=reports) is None
    assert Execution.objects.get(pk=execution.pk).status == S.RUNNING  # nothing settled

    assert agent_protocol.agent_settle_reporting(worker=worker, reports=reports) == [
        (True, S.SUCCEEDED)
    ]
    run.refresh_from_db()
    assert run.status == "succeeded"  # the run's hook, in the settlement's transaction


@on_postgresql
def test_a_failed_run_settles_in_a_transaction_that_applies_the_retry_policy():
    job = JobFactory(max_retries=1, command="false")
    execution = services.execution_enqueue(job=job)
    worker = WorkerFactory()
    claimed_by(worker, execution)
    report = {"execution_id": execution.pk, "status": S.FAILED, "exit_code": 1}
    assert services.executions_settle_alone(worker=worker, reports=[report]) is None
    assert agent_protocol.agent_settle_reporting(worker=worker, reports=[report]) == [
        (True, S.FAILED)
    ]
    assert Execution.objects.get(retry_of=execution).status == S.QUEUED
