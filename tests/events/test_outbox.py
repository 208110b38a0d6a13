"""The outbox: every state change worth telling writes one event in its own transaction
(an event exists if and only if the change committed), with the subject's ids and no
secret value; the relay dispatches them to consumers in order; old ones are purged."""

import json
from datetime import timedelta

import pytest
from django.db import transaction

from events import hooks
from events.models import Event
from events.relay import Relay
from events.services import event_emit, events_purge
from hodei.lib import clock
from pipelines import services as pipelines
from scheduler.services import schedule_create, schedule_fire
from tests.agent.conftest import drive, worker_of
from tests.factories import JobFactory, PipelineFactory
from tests.pipelines.test_runs import run_until_done
from workermanager import agent_protocol, workers
from workermanager.services import execution_cancel, execution_enqueue

pytestmark = pytest.mark.django_db

SECRET = "hunter2-very-secret-value"


def types_of(**subject_ids) -> list[str]:
    rows = Event.objects.order_by("id")
    return [
        e.type for e in rows if all(e.subject_ids.get(k) == str(v) for k, v in subject_ids.items())
    ]


def test_an_executions_life_is_queued_started_finished(make_agent):
    job = JobFactory(command="echo $TOKEN", secret_env={"TOKEN": SECRET})
    execution = drive(make_agent(), execution_enqueue(job=job))
    assert execution.status == "succeeded"
    assert types_of(execution_id=execution.pk) == [
        "execution.queued",
        "execution.started",
        "execution.finished",
    ]
    finished = Event.objects.get(type="execution.finished")
    assert finished.subject == f"execution:{execution.pk}"
    assert finished.subject_ids["job_id"] == str(job.pk)
    assert finished.subject_ids["worker_id"] == str(execution.worker_id)
    assert finished.payload["status"] == "succeeded" and finished.payload["exit_code"] == 0
    assert finished.payload["duration_ms"] is not None
    everything = json.dumps([e.as_message() for e in Event.objects.all()])
    assert SECRET not in everything


def test_failure_retry_lost_and_cancel_have_their_events(make_agent):
    job = JobFactory(command="exit 3", max_retries=1, retry_delay_seconds=0)
    agent = make_agent()
    first = drive(agent, execution_enqueue(job=job))
    retry = first.retried_by
    drive(agent, retry)
    assert types_of(execution_id=first.pk)[-1] == "execution.finished"
    assert Event.objects.filter(type="execution.finished", subject_ids__execution_id=str(retry.pk))
    finished = Event.objects.get(subject_ids__execution_id=str(first.pk), type="execution.finished")
    assert finished.payload["status"] == "failed" and finished.payload["exit_code"] == 3
    cancelled = execution_cancel(execution=execution_enqueue(command="sleep 5"))
    assert types_of(execution_id=cancelled.pk) == ["execution.queued", "execution.cancelled"]


def test_no_event_without_the_change_committing():
    job = JobFactory()
    with pytest.raises(RuntimeError), transaction.atomic():
        execution_enqueue(job=job)
        assert Event.objects.filter(type="execution.queued").exists()
        raise RuntimeError("the change rolls back")
    assert not Event.objects.exists()


def test_workers_online_offline_and_lost():
    worker, _ = workers.worker_register(type="default", name="w-events")
    agent_protocol.agent_go_offline(worker=worker)
    agent_protocol.agent_go_offline(worker=worker)  # once only
    other, _ = workers.worker_register(type="default", name="w-silent")
    workers.workers_reap(now=clock.now() + timedelta(hours=1))
    assert types_of(worker_id=worker.pk) == ["worker.online", "worker.offline"]
    assert types_of(worker_id=other.pk) == ["worker.online", "worker.lost"]


def test_pipeline_runs_start_and_finish(make_agent):
    pipeline = PipelineFactory()
    a = JobFactory(pipeline=pipeline, command="true")
    JobFactory(pipeline=pipeline, command="true").depends_on.set([a])
    run = run_until_done(make_agent(), pipelines.pipeline_run_start(pipeline=pipeline))
    assert types_of(pipeline_run_id=run.pk) == [
        # its executions' events carry the run id too
        "execution.queued",
        "execution.started",
        "pipeline_run.started",
        "execution.finished",
        "execution.queued",
        "execution.started",
        "execution.finished",
        "pipeline_run.finished",
    ]
    finished = Event.objects.get(type="pipeline_run.finished")
    assert finished.payload["status"] == "succeeded"
    assert finished.subject_ids["pipeline_id"] == str(pipeline.pk)


def test_schedule_slots_tell_what_became_of_them(monkeypatch):
    now = [clock.now()]
    monkeypatch.setattr(clock, "now", lambda: now[0])
    schedule = schedule_create(job=JobFactory(), cron="*/5 * * * *")
    for _ in range(2):  # fired, then skipped (forbid: the first is still queued)
        schedule.refresh_from_db()
        now[0] = schedule.next_run_at
        schedule_fire(schedule_id=schedule.pk)
    fired, skipped = Event.objects.filter(subject=f"schedule:{schedule.pk}").order_by("id")
    assert (fired.type, skipped.type) == ("schedule.fired", "schedule.skipped")
    assert fired.subject_ids["execution_id"] and fired.payload["outcome"] == "fired"
    assert skipped.payload["outcome"] == "skipped_overlap"


def test_unknown_types_are_refused():
    with pytest.raises(ValueError):
        event_emit("execution.exploded", subject=("execution", 1), ids={}, payload={})


def test_the_relay_dispatches_in_order_once(monkeypatch):
    seen = []
    listener = hooks.consumers.connect(lambda events: seen.extend(e.id for e in events))
    try:
        for _ in range(7):
            execution_enqueue(command="true")
        relay = Relay(batch=3)
        while relay.dispatch():
            pass
        assert seen == sorted(seen) == list(Event.objects.values_list("id", flat=True))
        assert relay.dispatch() == 0
        assert not Event.objects.filter(dispatched_at__isnull=True).exists()
    finally:
        hooks.consumers.disconnect(listener)


def test_purge_keeps_what_a_consumer_has_not_had(settings):
    settings.HODEI_NATS_URL = "nats://127.0.0.1:1"
    old = clock.now() - timedelta(days=settings.HODEI_EVENT_RETENTION_DAYS + 1)
    done = event_emit("worker.online", subject=("worker", 1), ids={}, payload={})
    unpublished = event_emit("worker.online", subject=("worker", 2), ids={}, payload={})
    young = event_emit("worker.online", subject=("worker", 3), ids={}, payload={})
    Event.objects.filter(pk__in=[done.pk, unpublished.pk]).update(created_at=old)
    Event.objects.exclude(pk=unpublished.pk).update(published_at=clock.now())
    Event.objects.update(dispatched_at=clock.now())
    assert events_purge() == 1
    assert set(Event.objects.values_list("pk", flat=True)) == {unpublished.pk, young.pk}
    settings.HODEI_NATS_URL = ""
    assert events_purge() == 1  # without NATS, publishing is not waited for


def test_worker_of_helper_sanity(make_agent):
    # The agent fixture registers its worker: an online event for it.
    agent = make_agent()
    assert types_of(worker_id=worker_of(agent).pk) == ["worker.online"]
