"""Dead-man alerts with real processes on PostgreSQL: a schedule whose job fails goes
down and comes back up; one that nobody fires (no qcluster) goes down too, noticed by the
event relay alone."""

import pytest

from events.models import Event
from orchestrator import services as orchestrator
from scheduler.models import Schedule
from scheduler.services import schedule_create
from tests.factories import JobFactory
from tests.processes import start_agent, start_qcluster, start_relay, stop, stop_group, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def health_of(schedule) -> str:
    return Schedule.objects.get(pk=schedule.pk).health


def test_a_failing_schedule_goes_down_then_up_after_a_success(child_env):
    job = JobFactory(command="exit 1")
    procs = [start_relay(child_env), start_agent(child_env, name="deadman-agent")]
    cluster = start_qcluster(child_env)
    try:
        schedule = schedule_create(
            job=job, cron="*/2 * * * * *", overlap_policy="allow", alert_after_seconds=2
        )
        wait_for(lambda: health_of(schedule) == "down", timeout=30, interval=0.2)
        assert "failed (exit 1)" in Schedule.objects.get(pk=schedule.pk).health_reason
        orchestrator.job_update(job=job, command="true")
        wait_for(lambda: health_of(schedule) == "up", timeout=30, interval=0.2)
    finally:
        stop_group(cluster)
        for proc in procs:
            stop(proc)
    kinds = list(
        Event.objects.filter(
            subject=f"schedule:{schedule.pk}", type__in=("schedule.late", "schedule.recovered")
        ).values_list("type", flat=True)
    )
    assert kinds[:2] == ["schedule.late", "schedule.recovered"]


def test_a_schedule_nobody_fires_goes_down(child_env):
    relay = start_relay(child_env)  # no qcluster at all
    try:
        schedule = schedule_create(
            job=JobFactory(command="true"), cron="*/2 * * * * *", alert_after_seconds=2
        )
        wait_for(lambda: health_of(schedule) == "down", timeout=15, interval=0.2)
    finally:
        stop(relay)
    schedule.refresh_from_db()
    assert "no scheduler fired it" in schedule.health_reason
    assert Event.objects.filter(type="schedule.late", subject=f"schedule:{schedule.pk}").exists()
