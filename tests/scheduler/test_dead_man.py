"""Dead-man alerts per schedule: a slot not succeeded within alert_after_seconds turns
the schedule down (an event, a gauge, a badge, an API field), the next success turns it
up again; a slot nobody fired is noticed too. And the scheduler's /health says degraded
while no qcluster runs."""

from datetime import timedelta

import pytest

from events.models import Event
from hodei.lib import clock
from scheduler.health import cluster_seen, schedules_check_health
from scheduler.models import Schedule
from scheduler.services import schedule_create, schedule_fire, schedule_update
from tests.conftest import client_for
from tests.factories import JobFactory, PipelineFactory, WorkerFactory, start
from tests.scheduler.test_firing import T0, now  # noqa: F401  (the settable clock)
from workermanager.models import Execution
from workermanager.services import execution_settle

pytestmark = pytest.mark.django_db


def fire_next(schedule, now):  # noqa: F811
    schedule.refresh_from_db()
    now.set(schedule.next_run_at)
    return schedule_fire(schedule_id=schedule.pk)


def settle(execution, status, now, exit_code=None):  # noqa: F811
    worker = WorkerFactory()
    start(execution, worker=worker, now=now.value)
    execution_settle(
        execution=execution,
        worker=worker,
        status=status,
        exit_code=exit_code,
        error="",
        log_bytes=0,
        log_truncated=False,
    )


def health(schedule) -> tuple[str, str]:
    schedule.refresh_from_db()
    return schedule.health, schedule.health_reason


def late_events(schedule):
    return list(
        Event.objects.filter(
            subject=f"schedule:{schedule.pk}", type__in=("schedule.late", "schedule.recovered")
        ).values_list("type", flat=True)
    )


def test_a_failing_slot_turns_it_down_after_its_grace_and_a_success_up(now):  # noqa: F811
    schedule = schedule_create(
        job=JobFactory(max_retries=0), cron="*/5 * * * *", alert_after_seconds=60
    )
    execution = fire_next(schedule, now).execution
    settle(execution, "failed", now, exit_code=2)
    now.set(now.value + timedelta(seconds=59))
    schedules_check_health()
    assert health(schedule)[0] == "unknown"  # within its grace
    now.set(now.value + timedelta(seconds=2))
    assert schedules_check_health() == 1
    state, reason = health(schedule)
    assert state == "down" and "failed (exit 2)" in reason
    assert late_events(schedule) == ["schedule.late"]
    schedules_check_health()
    assert late_events(schedule) == ["schedule.late"]  # told once

    settle(fire_next(schedule, now).execution, "succeeded", now)
    schedules_check_health()
    assert health(schedule)[0] == "up"
    assert late_events(schedule) == ["schedule.late", "schedule.recovered"]
    event = Event.objects.get(type="schedule.late")
    assert event.subject_ids["schedule_id"] == str(schedule.pk)
    assert "failed" in event.payload["reason"]


@pytest.mark.parametrize(
    "situation, words",
    [("running", "still running"), ("queued", "never started: no worker took it")],
)
def test_a_run_still_going_or_never_taken_is_down_too(now, situation, words):  # noqa: F811
    schedule = schedule_create(job=JobFactory(), cron="*/5 * * * *", alert_after_seconds=30)
    execution = fire_next(schedule, now).execution
    if situation == "running":
        start(execution, worker=WorkerFactory(), now=now.value)
    now.set(now.value + timedelta(seconds=31))
    schedules_check_health()
    state, reason = health(schedule)
    assert state == "down" and words in reason


def test_a_slot_nobody_fired_is_noticed(now):  # noqa: F811
    schedule = schedule_create(job=JobFactory(), cron="*/5 * * * *", alert_after_seconds=30)
    schedule.refresh_from_db()
    now.set(schedule.next_run_at + timedelta(seconds=31))  # no schedule_fire: no qcluster
    schedules_check_health()
    state, reason = health(schedule)
    assert state == "down" and "no scheduler fired it" in reason


def test_a_retry_that_succeeds_counts(now):  # noqa: F811
    schedule = schedule_create(
        job=JobFactory(max_retries=1, retry_delay_seconds=0),
        cron="*/5 * * * *",
        alert_after_seconds=60,
    )
    first = fire_next(schedule, now).execution
    settle(first, "failed", now, exit_code=1)
    retry = Execution.objects.get(retry_of=first)
    settle(retry, "succeeded", now)
    now.set(now.value + timedelta(seconds=61))
    schedules_check_health()
    assert health(schedule)[0] == "up"


def test_a_pipeline_schedule_is_judged_by_its_runs(now):  # noqa: F811
    pipeline = PipelineFactory()
    JobFactory(pipeline=pipeline, command="true")
    schedule = schedule_create(pipeline=pipeline, cron="*/5 * * * *", alert_after_seconds=10)
    run = fire_next(schedule, now).pipeline_run
    now.set(now.value + timedelta(seconds=11))
    schedules_check_health()
    state, reason = health(schedule)
    assert state == "down" and "pipeline run" in reason and run.status in reason


def test_paused_schedules_and_slots_before_alerting_are_not_held_against_it(now):  # noqa: F811
    schedule = schedule_create(job=JobFactory(), cron="*/5 * * * *")
    schedule.refresh_from_db()
    now.set(schedule.next_run_at + timedelta(minutes=1))  # a slot passed, unfired
    schedule = schedule_update(schedule=schedule, alert_after_seconds=30)
    schedules_check_health()
    assert health(schedule)[0] == "unknown"  # that slot was before alerting began
    schedule_update(schedule=schedule, enabled=False)
    now.set(now.value + timedelta(hours=1))
    schedules_check_health()
    assert health(schedule)[0] == "unknown"
    schedule_update(schedule=schedule, enabled=True)
    schedules_check_health()
    assert health(schedule)[0] == "unknown"  # slots missed while paused do not count


def test_the_api_admin_and_metrics_show_it(now, admin_user):  # noqa: F811
    schedule = schedule_create(
        job=JobFactory(), cron="*/5 * * * *", name="nightly", alert_after_seconds=30
    )
    sched = client_for("scheduler", admin_user)
    response = sched.patch(
        f"/api/v1/scheduled/{schedule.pk}", {"alert_after_seconds": 0}, format="json"
    )
    assert response.status_code == 400 and "alert_after_seconds" in response.json()["fields"]
    schedule.refresh_from_db()
    now.set(schedule.next_run_at + timedelta(seconds=31))
    schedules_check_health()
    body = sched.get(f"/api/v1/scheduled/{schedule.pk}").json()
    assert body["health"] == "down" and body["alert_after_seconds"] == 30
    assert body["down_since"] and "no scheduler fired it" in body["health_reason"]
    assert [s["id"] for s in sched.get("/api/v1/scheduled?health=down").json()] == [
        str(schedule.pk)
    ]
    metrics = sched.get("/metrics").content.decode()
    assert f'hodei_schedule_down{{schedule="nightly",schedule_id="{schedule.pk}"}} 1.0' in metrics


def test_admin_list_and_dashboard_show_down_schedules(operator, now):  # noqa: F811
    schedule = schedule_create(
        job=JobFactory(), cron="*/5 * * * *", name="backup", alert_after_seconds=30
    )
    schedule.refresh_from_db()
    now.set(schedule.next_run_at + timedelta(seconds=31))
    schedules_check_health()
    page = operator.get("/admin/scheduler/schedule/?health__exact=down").content.decode()
    assert 'data-status="down"' in page and "backup" in page
    dashboard = operator.get("/admin/").content.decode()
    assert 'id="hodei-schedules-down"' in dashboard and "backup" in dashboard


def test_scheduler_health_is_degraded_without_a_qcluster(db, settings):
    client = client_for("scheduler")
    body = client.get("/health").json()
    assert body["status"] == "degraded" and "no qcluster" in body["detail"]
    cluster_seen()
    assert client.get("/health").json()["status"] == "healthy"
    settings.HODEI_QCLUSTER_STALE_SECONDS = 1
    from scheduler.models import ClusterHeartbeat

    ClusterHeartbeat.objects.update(seen_at=clock.now() - timedelta(seconds=5))
    response = client.get("/health")
    assert response.status_code == 200 and response.json()["status"] == "degraded"
    # The other services do not depend on qcluster.
    assert client_for("orchestrator").get("/health").json()["status"] == "healthy"


def test_alerting_needs_a_positive_grace(sched):
    response = sched.post(
        "/api/v1/schedule",
        {"job_id": str(JobFactory().pk), "cron": "0 3 * * *", "alert_after_seconds": -5},
        format="json",
    )
    assert response.status_code == 400 and "alert_after_seconds" in response.json()["fields"]
    assert not Schedule.objects.exists()
    assert T0  # the clock fixture's origin is importable for the tests above
