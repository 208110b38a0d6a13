"""Firing schedules: slots, overlap and misfire policies, the django-q2 engine rows."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django_q.models import Schedule as EngineSchedule

from hodei.lib import clock
from scheduler.choices import FireOutcome, ScheduleStatus
from scheduler.cron import next_fire_times
from scheduler.models import ScheduleFire
from scheduler.services import (
    ENGINE_PREFIX,
    FIRE_BATCH,
    schedule_create,
    schedule_fire,
    schedule_run_now,
    schedule_update,
    schedules_fire_due,
)
from tests.factories import JobFactory, WorkerFactory, start
from workermanager.choices import ExecutionStatus, Trigger
from workermanager.models import Execution

MADRID = ZoneInfo("Europe/Madrid")
T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def now(monkeypatch):
    """A settable clock for the services."""

    class Clock:
        value = T0

        def set(self, value):
            self.value = value

    c = Clock()
    monkeypatch.setattr(clock, "now", lambda: c.value)
    return c


def engine_row(schedule):
    return EngineSchedule.objects.filter(name=ENGINE_PREFIX + str(schedule.pk)).first()


def madrid(*args):
    return datetime(*args, tzinfo=MADRID)


def test_daily_0230_runs_once_on_both_dst_nights_in_madrid():
    spring = next_fire_times("30 2 * * *", "Europe/Madrid", after=madrid(2026, 3, 28, 12), count=3)
    assert [t.astimezone(MADRID) for t in spring] == [
        madrid(2026, 3, 29, 3, 0),  # 02:30 does not exist: runs when the gap ends
        madrid(2026, 3, 30, 2, 30),
        madrid(2026, 3, 31, 2, 30),
    ]
    autumn = next_fire_times("30 2 * * *", "Europe/Madrid", after=madrid(2026, 10, 24, 12), count=3)
    local = [t.astimezone(MADRID) for t in autumn]
    assert [(t.day, t.hour, t.minute) for t in local] == [(25, 2, 30), (26, 2, 30), (27, 2, 30)]
    assert autumn[1] - autumn[0] == timedelta(hours=25)  # 02:30 happens twice: fires once


def test_hourly_schedule_keeps_utc_spacing_across_the_autumn_change():
    times = next_fire_times(
        "0 * * * *", "Europe/Madrid", after=madrid(2026, 10, 25, 0, 30), count=4
    )
    assert [t.astimezone(UTC).hour for t in times] == [23, 0, 2, 3]


def test_seconds_field_is_supported():
    times = next_fire_times("*/10 * * * * *", "UTC", after=T0, count=3)
    assert times == [T0 + timedelta(seconds=s) for s in (10, 20, 30)]


def test_creating_a_schedule_creates_its_engine_row_at_the_next_slot(db, now):
    schedule = schedule_create(job=JobFactory(), cron="*/5 * * * *")
    row = engine_row(schedule)
    assert schedule.next_run_at == T0 + timedelta(minutes=5)
    assert (row.func, row.schedule_type, row.repeats) == ("scheduler.tasks.fire_schedule", "O", 1)
    assert row.next_run == schedule.next_run_at
    assert row.intended_date_kwarg == "slot"


def test_firing_queues_an_execution_for_the_slot_and_moves_to_the_next(db, now):
    schedule = schedule_create(job=JobFactory(command="echo hi"), cron="*/5 * * * *")
    slot = schedule.next_run_at
    now.set(slot + timedelta(milliseconds=40))
    fire = schedule_fire(schedule_id=schedule.pk, slot=slot)
    assert fire.outcome == FireOutcome.FIRED
    assert fire.lag_ms == 40
    execution = fire.execution
    assert (execution.trigger, execution.schedule_id, execution.scheduled_for) == (
        Trigger.SCHEDULE,
        schedule.pk,
        slot,
    )
    assert execution.command == "echo hi"
    schedule.refresh_from_db()
    assert schedule.last_run_at == slot
    assert schedule.next_run_at == slot + timedelta(minutes=5)
    assert engine_row(schedule).next_run == schedule.next_run_at


def test_firing_the_same_slot_twice_queues_one_execution(db, now):
    schedule = schedule_create(job=JobFactory(), cron="*/5 * * * *")
    slot = schedule.next_run_at
    now.set(slot)
    assert schedule_fire(schedule_id=schedule.pk, slot=slot) is not None
    assert schedule_fire(schedule_id=schedule.pk, slot=slot) is None
    assert Execution.objects.filter(schedule=schedule).count() == 1


def test_the_database_refuses_a_second_execution_for_one_slot(db):
    from django.db import IntegrityError

    schedule = schedule_create(job=JobFactory(), cron="*/5 * * * *")
    Execution.objects.create(schedule=schedule, scheduled_for=T0, command="true")
    with pytest.raises(IntegrityError):
        Execution.objects.create(schedule=schedule, scheduled_for=T0, command="true")


def test_forbid_skips_a_slot_while_the_previous_run_is_active_and_records_it(db, now):
    schedule = schedule_create(job=JobFactory(), cron="* * * * *", overlap_policy="forbid")
    first_slot = schedule.next_run_at
    now.set(first_slot)
    first = schedule_fire(schedule_id=schedule.pk, slot=first_slot).execution
    start(first, worker=WorkerFactory(), now=first_slot)
    second_slot = first_slot + timedelta(minutes=1)
    now.set(second_slot)
    skipped = schedule_fire(schedule_id=schedule.pk, slot=second_slot)
    assert skipped.outcome == FireOutcome.SKIPPED_OVERLAP
    assert skipped.execution is None
    assert str(first.pk) in skipped.detail
    assert Execution.objects.filter(schedule=schedule).count() == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at == second_slot + timedelta(minutes=1)


def test_replace_cancels_the_running_one_and_starts_the_new_one(db, now):
    schedule = schedule_create(job=JobFactory(), cron="* * * * *", overlap_policy="replace")
    now.set(schedule.next_run_at)
    first = schedule_fire(schedule_id=schedule.pk, slot=schedule.next_run_at).execution
    schedule.refresh_from_db()
    now.set(schedule.next_run_at)
    fire = schedule_fire(schedule_id=schedule.pk, slot=schedule.next_run_at)
    first.refresh_from_db()
    assert first.status == ExecutionStatus.CANCELLED
    assert fire.outcome == FireOutcome.REPLACED
    assert fire.execution.status == ExecutionStatus.QUEUED


def test_allow_runs_both(db, now):
    schedule = schedule_create(job=JobFactory(), cron="* * * * *", overlap_policy="allow")
    now.set(schedule.next_run_at)
    schedule_fire(schedule_id=schedule.pk, slot=schedule.next_run_at)
    schedule.refresh_from_db()
    now.set(schedule.next_run_at)
    schedule_fire(schedule_id=schedule.pk, slot=schedule.next_run_at)
    assert Execution.objects.filter(schedule=schedule, status="queued").count() == 2


def test_run_once_after_downtime_fires_one_catch_up_never_a_burst(db, now):
    schedule = schedule_create(job=JobFactory(), cron="* * * * *", misfire_policy="run_once")
    slot = schedule.next_run_at
    now.set(slot + timedelta(minutes=30, seconds=10))  # down for half an hour
    fire = schedule_fire(schedule_id=schedule.pk, slot=slot)
    assert Execution.objects.filter(schedule=schedule).count() == 1
    assert fire.outcome == FireOutcome.FIRED
    assert fire.slot_at == slot + timedelta(minutes=30)  # the latest missed slot
    caught_up = ScheduleFire.objects.get(schedule=schedule, outcome=FireOutcome.CAUGHT_UP)
    assert "30 slots" in caught_up.detail
    schedule.refresh_from_db()
    assert schedule.next_run_at == slot + timedelta(minutes=31)


def test_skip_after_downtime_fires_only_future_slots(db, now):
    schedule = schedule_create(job=JobFactory(), cron="0 * * * *", misfire_policy="skip")
    slot = schedule.next_run_at
    now.set(slot + timedelta(hours=5, minutes=10))
    assert schedule_fire(schedule_id=schedule.pk, slot=slot) is None
    assert not Execution.objects.filter(schedule=schedule).exists()
    missed = ScheduleFire.objects.get(schedule=schedule)
    assert missed.outcome == FireOutcome.MISSED
    assert "6 slots" in missed.detail
    schedule.refresh_from_db()
    assert schedule.next_run_at == slot + timedelta(hours=6)
    assert engine_row(schedule).next_run == schedule.next_run_at


def test_skip_still_fires_a_slot_that_is_only_just_due(db, now):
    schedule = schedule_create(job=JobFactory(), cron="* * * * *", misfire_policy="skip")
    slot = schedule.next_run_at
    now.set(slot + timedelta(minutes=30, seconds=10))
    fire = schedule_fire(schedule_id=schedule.pk, slot=slot)
    assert fire.slot_at == slot + timedelta(minutes=30)
    assert ScheduleFire.objects.get(
        schedule=schedule, outcome=FireOutcome.MISSED
    ).detail.startswith("30 slots")
    schedule.refresh_from_db()
    assert engine_row(schedule).next_run == schedule.next_run_at == slot + timedelta(minutes=31)


def test_a_one_off_schedule_fires_once_and_completes(db, now):
    at = T0 + timedelta(seconds=5)
    schedule = schedule_create(job=JobFactory(), schedule_time=at)
    assert schedule.next_run_at == at
    now.set(at)
    assert schedule_fire(schedule_id=schedule.pk, slot=at).outcome == FireOutcome.FIRED
    assert schedule_fire(schedule_id=schedule.pk, slot=at) is None
    schedule.refresh_from_db()
    assert schedule.status == ScheduleStatus.COMPLETED
    assert schedule.next_run_at is None
    assert engine_row(schedule) is None
    assert Execution.objects.filter(schedule=schedule).count() == 1


def test_pause_stops_firing_and_resume_restarts_from_now_without_a_burst(db, now):
    schedule = schedule_create(job=JobFactory(), cron="* * * * *")
    schedule = schedule_update(schedule=schedule, enabled=False)
    assert (schedule.status, schedule.next_run_at) == (ScheduleStatus.PAUSED, None)
    assert engine_row(schedule) is None
    assert schedule_fire(schedule_id=schedule.pk, slot=T0 + timedelta(minutes=1)) is None
    now.set(T0 + timedelta(hours=2, seconds=30))
    schedule = schedule_update(schedule=schedule, enabled=True)
    assert schedule.status == ScheduleStatus.SCHEDULED
    assert schedule.next_run_at == T0 + timedelta(hours=2, minutes=1)
    assert engine_row(schedule).next_run == schedule.next_run_at
    assert not Execution.objects.filter(schedule=schedule).exists()


def test_changing_the_cron_recomputes_the_next_fire_times(db, now):
    schedule = schedule_create(job=JobFactory(), cron="0 * * * *")
    schedule = schedule_update(schedule=schedule, cron="*/10 * * * *", timezone="Europe/Madrid")
    assert schedule.next_run_at == T0 + timedelta(minutes=10)
    assert engine_row(schedule).next_run == schedule.next_run_at


def test_run_now_fires_outside_the_slots_and_respects_forbid(db, now):
    schedule = schedule_create(job=JobFactory(), cron="0 0 1 1 *")
    first = schedule_run_now(schedule=schedule)
    assert first.outcome == FireOutcome.FIRED and first.is_manual
    now.set(T0 + timedelta(seconds=1))
    second = schedule_run_now(schedule=schedule)
    assert second.outcome == FireOutcome.SKIPPED_OVERLAP
    schedule.refresh_from_db()
    assert schedule.last_run_at is None  # a manual run is not a slot


def test_deleted_or_paused_schedules_never_fire(db, now):
    schedule = schedule_create(job=JobFactory(), cron="* * * * *")
    slot = schedule.next_run_at
    schedule_update(schedule=schedule, enabled=False)
    now.set(slot)
    assert schedule_fire(schedule_id=schedule.pk, slot=slot) is None
    assert schedule_fire(schedule_id="01a22359-0000-7000-8000-000000000000", slot=slot) is None


def test_slots_within_the_grace_period_each_fire(db, now):
    schedule = schedule_create(job=JobFactory(), cron="* * * * * *", overlap_policy="allow")
    slot = schedule.next_run_at
    now.set(slot + timedelta(seconds=4, milliseconds=500))  # a scheduler 4.5 s behind
    schedule_fire(schedule_id=schedule.pk, slot=slot)
    fired = sorted(
        Execution.objects.filter(schedule=schedule).values_list("scheduled_for", flat=True)
    )
    assert fired == [slot + timedelta(seconds=i) for i in range(5)]
    assert not ScheduleFire.objects.filter(schedule=schedule).exclude(outcome="fired").exists()


def test_a_burst_of_due_schedules_fires_each_once_in_batches(db, now):
    count = FIRE_BATCH + 5  # more than one batch
    schedules = [
        schedule_create(job=JobFactory(), cron="*/5 * * * * *", overlap_policy="allow")
        for _ in range(count)
    ]
    later = schedule_create(job=JobFactory(), cron="0 0 1 1 *")  # not due
    slot = schedules[0].next_run_at
    assert {s.next_run_at for s in schedules} == {slot}
    now.set(slot + timedelta(milliseconds=20))

    assert schedules_fire_due() == count
    fired = ScheduleFire.objects.filter(slot_at=slot, outcome=FireOutcome.FIRED)
    assert fired.count() == count
    assert Execution.objects.filter(scheduled_for=slot).count() == count
    assert not Execution.objects.filter(schedule=later).exists()
    for schedule in schedules:
        schedule.refresh_from_db()
        assert schedule.last_run_at == slot
        assert schedule.next_run_at == slot + timedelta(seconds=5)
        # The engine row moved on too: django-q2 does not fire the slot again.
        assert engine_row(schedule).next_run == schedule.next_run_at
        assert engine_row(schedule).repeats == 1

    # Nothing more is due; a fire task for a handled slot changes nothing.
    assert schedules_fire_due() == 0
    assert schedule_fire(schedule_id=schedules[0].pk, slot=slot) is None
    assert Execution.objects.filter(scheduled_for=slot).count() == count


def test_a_burst_leaves_paused_schedules_and_future_slots_alone(db, now):
    due = schedule_create(job=JobFactory(), cron="*/5 * * * * *", overlap_policy="allow")
    paused = schedule_create(job=JobFactory(), cron="*/5 * * * * *", overlap_policy="allow")
    schedule_update(schedule=paused, enabled=False)
    now.set(due.next_run_at - timedelta(milliseconds=1))
    assert schedules_fire_due() == 0
    now.set(due.next_run_at)
    assert schedules_fire_due() == 1
    assert not Execution.objects.filter(schedule=paused).exists()
