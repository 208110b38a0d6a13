"""Dead-man alerts per schedule, and whether qcluster is alive.

A schedule with ``alert_after_seconds`` (healthchecks.io's grace) is checked against its
latest slot whose grace has passed: it is **up** if a run for that slot or a later one
(any attempt of it, or a run-now) succeeded, else **down**, with the reason (failed, still
running, never started, never fired). Turning down is a ``schedule.late`` event, turning
up again a ``schedule.recovered`` one. The slots come from the schedule's timing, not
from its history, so a slot no scheduler fired is noticed too; and the check runs in the
event relay (``relayevents``) as well as in qcluster's periodic task, so it does not
depend on the firing path working."""

import logging
import os
import socket
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from hodei.lib import clock
from pipelines.models import PipelineRun
from scheduler import outbox
from scheduler.choices import ScheduleHealth, ScheduleStatus
from scheduler.cron import previous_fire_time
from scheduler.models import ClusterHeartbeat, Schedule, ScheduleFire
from workermanager.choices import ExecutionStatus
from workermanager.models import Execution

log = logging.getLogger("hodei.scheduler")
H = ScheduleHealth
# How many of a slot's attempts are followed (retries of retries).
MAX_ATTEMPTS = 50


def deadline_slot(schedule: Schedule, *, now: datetime) -> datetime | None:
    """The latest slot whose grace has passed (and that alerting covers), or None."""
    cutoff = now - timedelta(seconds=schedule.alert_after_seconds)
    if schedule.cron:
        slot = previous_fire_time(schedule.cron, schedule.timezone, at_or_before=cutoff)
    else:
        slot = schedule.schedule_time if schedule.schedule_time <= cutoff else None
    if slot is None or (schedule.alert_from and slot <= schedule.alert_from):
        return None
    return slot


def _latest_attempts(roots: list[Execution]) -> list[Execution]:
    """Each run's latest attempt (its retries followed), one query per retry depth for
    all of them together."""
    latest = {root.pk: root for root in roots}
    root_of = {root.pk: root.pk for root in roots}  # an attempt -> the run it retries
    for _ in range(MAX_ATTEMPTS):
        following = Execution.objects.filter(retry_of_id__in=list(root_of)).order_by("id")
        root_of = {e.pk: root_of[e.retry_of_id] for e in following}
        if not root_of:
            break
        for e in following:
            latest[root_of[e.pk]] = e
    return [latest[root.pk] for root in roots]


def verdict(schedule: Schedule, slot: datetime) -> tuple[bool, str]:
    """(succeeded, why not) for ``slot`` and the runs after it."""
    if schedule.pipeline_id:
        runs = PipelineRun.objects.filter(schedule=schedule, scheduled_for__gte=slot)
        if runs.filter(status="succeeded").exists():
            return True, ""
        run = runs.order_by("scheduled_for").first()
        if run is not None:
            return False, f"its pipeline run for {slot:%Y-%m-%d %H:%M:%S} UTC is {run.status}"
    else:
        roots = Execution.objects.filter(schedule=schedule, scheduled_for__gte=slot).order_by(
            "scheduled_for"
        )[:MAX_ATTEMPTS]
        first = None
        for latest in _latest_attempts(list(roots)):
            if latest.status == ExecutionStatus.SUCCEEDED:
                return True, ""
            first = first or latest
        if first is not None:
            return False, _why(first, slot)
    fire = ScheduleFire.objects.filter(schedule=schedule, slot_at=slot).first()
    if fire is not None:
        return False, f"the slot at {slot:%Y-%m-%d %H:%M:%S} UTC was {fire.outcome}: {fire.detail}"
    return (
        False,
        f"nothing ran for the slot at {slot:%Y-%m-%d %H:%M:%S} UTC (no scheduler fired it)",
    )


def _why(execution: Execution, slot: datetime) -> str:
    at = f"{slot:%Y-%m-%d %H:%M:%S} UTC"
    if execution.status == ExecutionStatus.QUEUED:
        return f"its run for {at} never started: no worker took it"
    if execution.status in (ExecutionStatus.RUNNING, ExecutionStatus.PENDING):
        return f"its run for {at} is still {execution.status}"
    detail = f" (exit {execution.exit_code})" if execution.exit_code not in (None, 0) else ""
    return f"its run for {at} {execution.status}{detail}"


def schedules_check_health(*, now: datetime | None = None) -> int:
    """Check every alerting schedule; how many changed health."""
    now = now or clock.now()
    changed = 0
    ids = Schedule.objects.filter(alert_after_seconds__isnull=False).exclude(
        status=ScheduleStatus.PAUSED
    )
    for pk in ids.values_list("pk", flat=True):
        changed += _check(pk, now=now)
    return changed


@transaction.atomic
def _check(pk, *, now: datetime) -> int:
    schedule = (
        Schedule.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(pk=pk, alert_after_seconds__isnull=False)
        .first()
    )
    if schedule is None:
        return 0  # being fired or checked elsewhere: next pass
    slot = deadline_slot(schedule, now=now)
    if slot is None:
        return 0
    ok, reason = verdict(schedule, slot)
    target = H.UP if ok else H.DOWN
    if schedule.health == target and (ok or schedule.health_reason == reason[:255]):
        return 0
    previous = schedule.record_health(ok=ok, reason=reason, now=now)
    if target == H.DOWN and previous != H.DOWN:
        log.warning("schedule %s is down: %s", schedule, reason)
        outbox.health_event(schedule, "late", reason=reason, slot=slot)
    elif target == H.UP and previous == H.DOWN:
        log.info("schedule %s recovered", schedule)
        outbox.health_event(schedule, "recovered", reason="it succeeded again", slot=slot)
    return 1 if previous != target else 0


_last_relay_check = [0.0]
RELAY_CHECK_SECONDS = 1.0


def check_from_relay() -> None:
    """The relay's tick: check at most once a second."""
    now = time.monotonic()
    if now - _last_relay_check[0] >= RELAY_CHECK_SECONDS:
        _last_relay_check[0] = now
        schedules_check_health()


# -- qcluster liveness -------------------------------------------------------------

HEARTBEAT_NAME = f"{socket.gethostname()}:{os.getpid()}"


def cluster_seen(*, now: datetime | None = None) -> None:
    """Record that this qcluster process is alive."""
    now = now or clock.now()
    ClusterHeartbeat.objects.update_or_create(name=HEARTBEAT_NAME, defaults={"seen_at": now})
    ClusterHeartbeat.objects.filter(seen_at__lt=now - timedelta(days=1)).delete()


def cluster_problem(*, now: datetime | None = None) -> str:
    """Why the scheduler is degraded ("" when a qcluster was seen recently)."""
    now = now or clock.now()
    last = ClusterHeartbeat.objects.aggregate(last=Max("seen_at"))["last"]
    stale = settings.HODEI_QCLUSTER_STALE_SECONDS
    if last is None:
        return "no qcluster has been seen: schedules do not fire"
    age = (now - last).total_seconds()
    if age > stale:
        return f"no qcluster seen for {age:.0f} s (more than {stale} s): schedules do not fire"
    return ""
