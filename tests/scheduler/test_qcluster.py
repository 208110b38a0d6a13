"""Schedules fired by real qcluster processes, run by a real agent."""

from datetime import timedelta

import pytest

from hodei.lib import clock
from scheduler.choices import FireOutcome, ScheduleStatus
from scheduler.models import ScheduleFire
from scheduler.services import schedule_create
from tests.factories import JobFactory
from tests.processes import start_agent, start_qcluster, stop, stop_group, wait_for
from workermanager.choices import TERMINAL, ExecutionStatus
from workermanager.models import Execution

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def cluster(child_env):
    """cluster(n) starts n qcluster processes and returns once they fire schedules."""
    procs = []

    def start(count=1):
        procs.extend(start_qcluster(child_env) for _ in range(count))
        probe = schedule_create(
            job=JobFactory(command=""), schedule_time=clock.now() + timedelta(seconds=0.5)
        )
        wait_for(lambda: Execution.objects.filter(schedule=probe).exists(), timeout=30)

    yield start
    for proc in procs:
        stop_group(proc)


def test_a_one_off_schedule_fires_once_on_time_and_its_execution_succeeds(cluster, child_env):
    cluster()
    agent = start_agent(child_env, name="sched-agent")
    try:
        at = clock.now() + timedelta(seconds=3)
        schedule = schedule_create(job=JobFactory(command="echo scheduled"), schedule_time=at)
        execution = wait_for(
            lambda: Execution.objects.filter(schedule=schedule).first(), timeout=15
        )
        wait_for(lambda: Execution.objects.get(pk=execution.pk).status in TERMINAL, timeout=10)
    finally:
        stop(agent)
    execution.refresh_from_db()
    schedule.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert execution.scheduled_for == at
    assert (execution.created_at - at).total_seconds() < 1.0
    assert schedule.status == ScheduleStatus.COMPLETED
    assert Execution.objects.filter(schedule=schedule).count() == 1


def test_two_qclusters_fire_each_slot_exactly_once(cluster):
    cluster(2)
    schedule = schedule_create(
        job=JobFactory(command="true"), cron="*/2 * * * * *", overlap_policy="allow"
    )
    first_slot = schedule.next_run_at
    wait_for(
        lambda: Execution.objects.filter(schedule=schedule).count() >= 6, timeout=25, interval=0.2
    )
    slots = sorted(
        Execution.objects.filter(schedule=schedule).values_list("scheduled_for", flat=True)
    )
    assert len(slots) == len(set(slots))
    assert slots[0] == first_slot
    # No slot missed between the first and the last.
    assert [b - a for a, b in zip(slots, slots[1:], strict=False)] == [timedelta(seconds=2)] * (
        len(slots) - 1
    )
    lags = [f.lag_ms for f in ScheduleFire.objects.filter(schedule=schedule)]
    assert max(lags) < 1000, lags


def test_a_group_sigterm_stops_qcluster_promptly(child_env):
    import time

    proc = start_qcluster(child_env)
    time.sleep(2)
    started = time.monotonic()
    stop_group(proc, timeout=30)
    # Gracefully, well before the supervisor's 10 s SIGKILL escalation.
    assert time.monotonic() - started < 9
    assert proc.returncode == 0


def test_forbid_skips_slots_while_a_slow_run_is_still_running(cluster, child_env):
    cluster()
    agent = start_agent(child_env, name="slow-agent")
    try:
        schedule = schedule_create(
            job=JobFactory(command="sleep 3"), cron="* * * * * *", overlap_policy="forbid"
        )
        wait_for(
            lambda: (
                ScheduleFire.objects.filter(
                    schedule=schedule, outcome=FireOutcome.SKIPPED_OVERLAP
                ).count()
                >= 2
            ),
            timeout=20,
        )
        running = Execution.objects.filter(schedule=schedule, status__in=["queued", "running"])
        assert running.count() == 1
    finally:
        stop(agent)
