"""Runs that ended in one turn of an agent's loop, reported together
(``agent_protocol.agent_settle_many``: one statement on PostgreSQL, one by one on SQLite)."""

from datetime import timedelta

import pytest

from hodei.exceptions import Forbidden
from hodei.lib import clock
from tests.factories import ExecutionFactory, JobFactory, WorkerFactory, start
from workermanager import agent_protocol
from workermanager.choices import ExecutionStatus
from workermanager.models import Execution
from workermanager.workers import workers_reap

pytestmark = pytest.mark.django_db
S = ExecutionStatus


def report(execution, status, **more) -> dict:
    return {"execution_id": execution.pk, "status": status, "exit_code": 0, **more}


def test_each_run_is_settled_as_reported_with_its_retry_policy_in_one_call():
    worker = WorkerFactory()
    now = clock.now()
    ok = start(ExecutionFactory(), worker=worker, now=now)
    failing = start(ExecutionFactory(job=JobFactory(max_retries=1)), worker=worker, now=now)
    slow = start(ExecutionFactory(timeout_seconds=7), worker=worker, now=now)

    recorded = agent_protocol.agent_settle_many(
        worker=worker,
        reports=[
            report(ok, S.SUCCEEDED, log_bytes=12, outputs={"V": "1"}),
            report(failing, S.FAILED, exit_code=3, error="boom", log_truncated=True),
            report(slow, S.TIMED_OUT, exit_code=None),
        ],
    )

    assert recorded == [True, True, True]
    ok, failing, slow = (Execution.objects.get(pk=e.pk) for e in (ok, failing, slow))
    assert (ok.status, ok.exit_code, ok.log_bytes, ok.outputs) == (S.SUCCEEDED, 0, 12, {"V": "1"})
    assert ok.finished_at is not None
    assert (failing.status, failing.exit_code, failing.error) == (S.FAILED, 3, "boom")
    assert failing.log_truncated is True
    assert (slow.status, slow.error) == (S.TIMED_OUT, "Timed out after 7 s.")
    # The retry policy applies to what moved: the failure is queued again, once.
    retries = Execution.objects.filter(retry_of__in=[ok.pk, failing.pk, slow.pk])
    assert [(r.retry_of_id, r.status) for r in retries] == [(failing.pk, S.QUEUED)]
    assert failing.job.status == S.QUEUED  # the job mirrors its newest execution


def test_a_late_report_in_a_batch_changes_nothing_and_the_others_are_recorded():
    worker = WorkerFactory()
    now = clock.now()
    lost = start(ExecutionFactory(), worker=worker, now=now)
    fresh = start(ExecutionFactory(), worker=worker, now=now)
    Execution.objects.filter(pk=lost.pk).update(status=S.LOST, finished_at=now)

    recorded = agent_protocol.agent_settle_many(
        worker=worker, reports=[report(lost, S.SUCCEEDED), report(fresh, S.SUCCEEDED)]
    )

    assert recorded == [False, True]
    assert Execution.objects.get(pk=lost.pk).status == S.LOST
    assert Execution.objects.get(pk=fresh.pk).status == S.SUCCEEDED


def test_a_batch_holding_another_workers_execution_is_refused_whole():
    mine, other = WorkerFactory(), WorkerFactory()
    now = clock.now()
    own = start(ExecutionFactory(), worker=mine, now=now)
    foreign = start(ExecutionFactory(), worker=other, now=now)

    with pytest.raises(Forbidden, match=str(foreign.pk)):
        agent_protocol.agent_settle_many(
            worker=mine, reports=[report(own, S.SUCCEEDED), report(foreign, S.SUCCEEDED)]
        )

    # Nothing of the batch was recorded, not even the worker's own run.
    statuses = dict(Execution.objects.values_list("pk", "status"))
    assert statuses == {own.pk: S.RUNNING, foreign.pk: S.RUNNING}


def test_a_batch_from_a_reaped_worker_changes_nothing():
    worker = WorkerFactory(last_heartbeat_at=clock.now() - timedelta(hours=1))
    running = start(ExecutionFactory(), worker=worker, now=clock.now())
    workers_reap()

    recorded = agent_protocol.agent_settle_many(worker=worker, reports=[report(running, "failed")])

    assert recorded == [False]
    assert Execution.objects.get(pk=running.pk).status == S.LOST


def test_an_outcome_that_is_not_how_a_run_ends_is_refused():
    worker = WorkerFactory()
    running = start(ExecutionFactory(), worker=worker, now=clock.now())
    with pytest.raises(ValueError, match="queued"):
        agent_protocol.agent_settle_many(worker=worker, reports=[report(running, "queued")])
    assert Execution.objects.get(pk=running.pk).status == S.RUNNING
