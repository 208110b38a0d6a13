"""Why is it waiting? Each reason comes from a real situation (workers registered,
drained, busy or gone; retry back-off; a job's concurrency limit; a pipeline's needs or
status) and explains itself in the API, the admin and /metrics."""

from datetime import timedelta

import pytest

from hodei.lib import clock
from orchestrator import services as orchestrator
from pipelines import services as pipelines
from tests.agent.conftest import drive
from tests.conftest import client_for
from tests.factories import JobFactory, PipelineFactory, UserFactory, start
from workermanager import agent_protocol, waiting, workers
from workermanager.models import Worker
from workermanager.services import execution_enqueue

pytestmark = pytest.mark.django_db
R = waiting.Reason


def reason(execution):
    execution.refresh_from_db()
    return waiting.waiting_reason(execution)


def online(type="gpu", capacity=1, name=None):
    worker, _ = workers.worker_register(type=type, name=name or f"{type}-w", capacity=capacity)
    return worker


def test_no_worker_of_its_type_ever_registered():
    why = reason(execution_enqueue(command="true", worker_type="gpu"))
    assert why.code == R.NO_WORKER_REGISTERED
    assert "'gpu'" in why.message and "runworker --type gpu" in why.message


def test_every_worker_of_its_type_is_offline():
    agent_protocol.agent_go_offline(worker=online())
    why = reason(execution_enqueue(command="true", worker_type="gpu"))
    assert why.code == R.NO_WORKER_ONLINE and "1 registered" in why.message


def test_a_silent_worker_counts_as_not_online(settings):
    worker = online()
    Worker.objects.filter(pk=worker.pk).update(
        last_heartbeat_at=clock.now() - timedelta(seconds=settings.HODEI_HEARTBEAT_SECONDS * 3)
    )
    assert reason(execution_enqueue(command="true", worker_type="gpu")).code == R.NO_WORKER_ONLINE


def test_every_live_worker_is_draining():
    worker = online()
    worker.drain()
    why = reason(execution_enqueue(command="true", worker_type="gpu"))
    assert why.code == R.ALL_DRAINING


def test_all_busy_with_its_position_in_the_queue():
    worker = online(capacity=1)
    busy = execution_enqueue(command="sleep 9", worker_type="gpu")
    start(busy, worker=worker, now=clock.now())
    first = execution_enqueue(command="true", worker_type="gpu")
    second = execution_enqueue(command="true", worker_type="gpu")
    why = reason(second)
    assert why.code == R.ALL_BUSY
    assert "1 of 1 slots in use" in why.message and "position 2" in why.message
    assert "position 1" in reason(first).message


def test_higher_priority_goes_ahead_in_the_position():
    worker = online(capacity=1)
    start(execution_enqueue(command="sleep 9", worker_type="gpu"), worker=worker, now=clock.now())
    low = execution_enqueue(command="true", worker_type="gpu")
    urgent = execution_enqueue(command="true", worker_type="gpu", priority=10)
    assert "position 1" in reason(urgent).message
    assert "position 2" in reason(low).message


def test_a_worker_with_room_is_about_to_take_it():
    online(capacity=2)
    why = reason(execution_enqueue(command="true", worker_type="gpu"))
    assert why.code == R.DISPATCHING and "2 free slot" in why.message


def test_retry_back_off_until_a_time(make_agent):
    job = JobFactory(command="exit 1", max_retries=1, retry_delay_seconds=300)
    first = drive(make_agent(), execution_enqueue(job=job))
    why = reason(first.retried_by)
    assert why.code == R.RETRY_BACKOFF and "may start at" in why.message


def test_the_jobs_concurrency_limit(make_agent):
    job = JobFactory(command="sleep 9", concurrency_limit=1)
    online(type="", name="any-worker", capacity=4)
    running = execution_enqueue(job=job)
    start(running, worker=Worker.objects.get(name="any-worker"), now=clock.now())
    why = reason(execution_enqueue(job=job))
    assert why.code == R.CONCURRENCY_LIMIT and "limit of 1" in why.message


def test_a_pipeline_job_names_the_jobs_it_needs():
    pipeline = PipelineFactory()
    build = JobFactory(pipeline=pipeline, name="build", command="true")
    test = JobFactory(pipeline=pipeline, name="test", command="true")
    test.depends_on.set([build])
    run = pipelines.pipeline_run_start(pipeline=pipeline)
    why = reason(run.executions.get(job=test))
    assert why.code == R.DEPENDENCIES and "build (queued)" in why.message


def test_a_paused_pipelines_jobs_wait_for_it():
    pipeline = PipelineFactory()
    JobFactory(pipeline=pipeline, command="true")
    orchestrator.pipeline_update(pipeline=pipeline, status="paused")
    run = pipelines.pipeline_run_start(pipeline=pipeline)
    why = reason(run.executions.get())
    assert why.code == R.PIPELINE_PAUSED and "paused" in why.message


def test_started_executions_do_not_wait(make_agent):
    execution = drive(make_agent(), execution_enqueue(command="true"))
    assert reason(execution) is None


def test_the_api_shows_it_on_the_execution_only(wm):
    execution = execution_enqueue(command="true", worker_type="gpu")
    body = wm.get(f"/api/v1/executions/{execution.pk}").json()
    assert body["waiting_reason"]["code"] == R.NO_WORKER_REGISTERED
    assert body["waiting_reason"]["since"] and body["waiting_reason"]["message"]
    assert wm.get("/api/v1/executions").json()[0]["waiting_reason"] is None


def test_metrics_count_the_blocked_by_reason(make_agent):
    execution_enqueue(command="true", worker_type="gpu")
    execution_enqueue(command="true", worker_type="gpu")
    online(type="cpu", capacity=1).drain()
    execution_enqueue(command="true", worker_type="cpu")
    counts = waiting.blocked_counts()
    assert counts[R.NO_WORKER_REGISTERED] == 2 and counts[R.ALL_DRAINING] == 1
    client = client_for("workermanager", UserFactory(is_superuser=True))
    text = client.get("/metrics").content.decode()
    assert 'hodei_queue_blocked{reason="no_worker_registered"} 2.0' in text
    assert 'hodei_queue_blocked{reason="all_draining"} 1.0' in text


def test_the_admin_shows_why(operator):
    execution = execution_enqueue(command="true", worker_type="gpu")
    page = operator.get(f"/admin/workermanager/execution/{execution.pk}/change/")
    assert 'data-waiting="no_worker_registered"' in page.content.decode()
    listing = operator.get("/admin/workermanager/execution/?status__exact=queued")
    assert "waiting: no worker registered" in listing.content.decode()
