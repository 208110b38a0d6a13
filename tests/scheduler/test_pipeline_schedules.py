"""Scheduled pipelines: a schedule runs a job or a pipeline (exactly one); a pipeline's
slots start pipeline runs, under the overlap and misfire policies, and a paused pipeline's
slots are skipped and recorded so."""

from datetime import timedelta

import pytest

from orchestrator import services as orchestrator
from pipelines.models import PipelineRun
from pipelines.services import pipeline_run_start
from scheduler.choices import FireOutcome
from scheduler.models import Schedule, ScheduleFire
from scheduler.services import schedule_create, schedule_fire, schedule_run_now, schedule_update
from tests.factories import JobFactory, PipelineFactory
from tests.orchestrator.test_api import assert_field_error
from tests.scheduler.test_firing import T0, now  # noqa: F401  (the settable clock)

pytestmark = pytest.mark.django_db


def diamond():
    pipeline = PipelineFactory()
    a = JobFactory(pipeline=pipeline, name="a", command="true")
    b = JobFactory(pipeline=pipeline, name="b", command="true")
    b.depends_on.set([a])
    return pipeline


def fire_next(schedule, now):  # noqa: F811
    schedule.refresh_from_db()
    now.set(schedule.next_run_at)
    return schedule_fire(schedule_id=schedule.pk)


def test_a_pipeline_slot_starts_a_run(now):  # noqa: F811
    pipeline = diamond()
    schedule = schedule_create(pipeline=pipeline, cron="*/5 * * * *")
    fire = fire_next(schedule, now)
    assert fire.outcome == FireOutcome.FIRED and fire.execution_id is None
    run = fire.pipeline_run
    assert run.pipeline == pipeline and run.trigger == "schedule"
    assert run.schedule == schedule and run.scheduled_for == T0 + timedelta(minutes=5)
    assert run.executions.count() == 2
    assert fire_next(schedule, now) is not None  # the next slot
    # forbid (the default): the first run is still active
    assert ScheduleFire.objects.filter(schedule=schedule).latest("slot_at").outcome == (
        FireOutcome.SKIPPED_OVERLAP
    )
    assert PipelineRun.objects.count() == 1


def test_forbid_looks_at_every_active_run_of_the_pipeline(now):  # noqa: F811
    pipeline = diamond()
    pipeline_run_start(pipeline=pipeline)  # from the API, not the schedule
    schedule = schedule_create(pipeline=pipeline, cron="*/5 * * * *")
    fire = fire_next(schedule, now)
    assert fire.outcome == FireOutcome.SKIPPED_OVERLAP and fire.pipeline_run is None


def test_replace_cancels_the_active_runs(now):  # noqa: F811
    pipeline = diamond()
    old = pipeline_run_start(pipeline=pipeline)
    schedule = schedule_create(pipeline=pipeline, cron="*/5 * * * *", overlap_policy="replace")
    fire = fire_next(schedule, now)
    assert fire.outcome == FireOutcome.REPLACED
    old.refresh_from_db()
    assert old.status == "cancelled"
    assert fire.pipeline_run.status == "queued"


def test_a_paused_pipelines_slots_are_skipped_and_recorded(now):  # noqa: F811
    pipeline = diamond()
    schedule = schedule_create(pipeline=pipeline, cron="*/5 * * * *", overlap_policy="allow")
    job_schedule = schedule_create(job=pipeline.jobs.get(name="a"), cron="*/5 * * * *")
    orchestrator.pipeline_update(pipeline=pipeline, status="paused")
    fire = fire_next(schedule, now)
    assert fire.outcome == FireOutcome.SKIPPED_PAUSED and "paused" in fire.detail
    assert fire_next(job_schedule, now).outcome == FireOutcome.SKIPPED_PAUSED
    assert not PipelineRun.objects.exists()
    orchestrator.pipeline_update(pipeline=pipeline, status="active")
    assert fire_next(schedule, now).outcome == FireOutcome.FIRED
    now.set(now.value + timedelta(seconds=1))
    assert schedule_run_now(schedule=schedule).pipeline_run is not None


def test_exactly_one_of_job_and_pipeline(db):
    from hodei.exceptions import InvalidInput

    with pytest.raises(InvalidInput) as caught:
        schedule_create(job=JobFactory(), pipeline=PipelineFactory(), cron="* * * * *")
    assert set(caught.value.fields) == {"job_id", "pipeline_id"}
    with pytest.raises(InvalidInput):
        schedule_create(cron="* * * * *")


def test_a_schedule_can_be_pointed_at_a_pipeline_and_back(db):
    job, pipeline = JobFactory(), diamond()
    schedule = schedule_create(job=job, cron="*/5 * * * *")
    schedule = schedule_update(schedule=schedule, pipeline=pipeline)
    assert (schedule.job_id, schedule.pipeline_id) == (None, pipeline.pk)
    schedule = schedule_update(schedule=schedule, job=job)
    assert (schedule.job_id, schedule.pipeline_id) == (job.pk, None)


def test_the_database_refuses_both_or_neither(db):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Schedule.objects.create(cron="* * * * *")


# -- the API -----------------------------------------------------------------------


def test_post_schedule_takes_pipeline_id(sched):
    pipeline = diamond()
    response = sched.post(
        "/api/v1/schedule",
        {"pipeline_id": str(pipeline.pk), "cron": "0 3 * * *", "timezone": "Europe/Madrid"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["pipeline_id"] == str(pipeline.pk) and body["job_id"] is None
    listed = sched.get(f"/api/v1/scheduled?pipeline_id={pipeline.pk}").json()
    assert [s["id"] for s in listed] == [body["id"]]
    fired = sched.post(f"/api/v1/scheduled/{body['id']}/run")
    assert fired.status_code == 201
    assert fired.json()["pipeline_run_id"] and fired.json()["execution_id"] is None


@pytest.mark.parametrize("both", [True, False])
def test_post_schedule_wants_exactly_one_target(sched, both):
    body = {"cron": "0 3 * * *"}
    if both:
        body |= {"job_id": str(JobFactory().pk), "pipeline_id": str(PipelineFactory().pk)}
    response = sched.post("/api/v1/schedule", body, format="json")
    assert_field_error(response, "pipeline_id")
    assert "job_id" in response.json()["fields"]
    assert not Schedule.objects.exists()


def test_unknown_pipeline_id_is_a_400(sched):
    import uuid

    response = sched.post(
        "/api/v1/schedule", {"pipeline_id": str(uuid.uuid4()), "cron": "0 3 * * *"}, format="json"
    )
    assert_field_error(response, "pipeline_id")
