"""Workflows on schedules and the worker registry."""

import socket
from datetime import datetime

from django.db import IntegrityError, transaction

from hodei.exceptions import InvalidInput
from hodei.lib import clock
from hodei.lib.ids import uuid7
from orchestrator.models import Job
from scheduler.choices import ScheduleStatus, WorkerStatus
from scheduler.cron import CronError, next_fire_times, parse_timezone, validate_cron
from scheduler.models import Schedule, Worker

UPCOMING_COUNT = 5


def schedule_upcoming(
    schedule: Schedule, *, count: int = UPCOMING_COUNT, now=None
) -> list[datetime]:
    """The next fire times of an active schedule, as aware UTC datetimes."""
    if schedule.status != ScheduleStatus.SCHEDULED or not schedule.enabled:
        return []
    now = now or clock.now()
    if schedule.cron:
        after = max(now, schedule.last_run_at) if schedule.last_run_at else now
        return next_fire_times(schedule.cron, schedule.timezone, after=after, count=count)
    if schedule.schedule_time and schedule.last_run_at is None:
        return [schedule.schedule_time]
    return []


def _check_timing(*, cron: str, schedule_time, timezone: str) -> str:
    errors: dict[str, list[str]] = {}
    if bool(cron) == (schedule_time is not None):
        errors["cron"] = ["Give exactly one of cron or schedule_time."]
        errors["schedule_time"] = ["Give exactly one of cron or schedule_time."]
    try:
        parse_timezone(timezone)
    except CronError as exc:
        errors["timezone"] = [str(exc)]
    if cron and "cron" not in errors:
        try:
            cron = validate_cron(cron)
        except CronError as exc:
            errors["cron"] = [str(exc)]
    if errors:
        raise InvalidInput("Invalid schedule.", fields=errors)
    return cron


def schedule_create(
    *,
    job: Job,
    cron: str = "",
    schedule_time: datetime | None = None,
    timezone: str = "UTC",
    name: str = "",
    enabled: bool = True,
    overlap_policy: str = Schedule._meta.get_field("overlap_policy").default,
    misfire_policy: str = Schedule._meta.get_field("misfire_policy").default,
) -> Schedule:
    cron = _check_timing(cron=cron, schedule_time=schedule_time, timezone=timezone)
    now = clock.now()
    schedule = Schedule(
        job=job,
        cron=cron,
        schedule_time=schedule_time,
        timezone=timezone,
        name=name,
        enabled=enabled,
        status=ScheduleStatus.SCHEDULED if enabled else ScheduleStatus.PAUSED,
        overlap_policy=overlap_policy,
        misfire_policy=misfire_policy,
        created_at=now,
        updated_at=now,
    )
    upcoming = schedule_upcoming(schedule, count=1, now=now)
    schedule.next_run_at = upcoming[0] if upcoming else None
    schedule.save()
    return schedule


def worker_register(
    *,
    type: str,
    name: str = "",
    labels: dict | None = None,
    capacity: int = 1,
    hostname: str = "",
    version: str = "",
    pid: int | None = None,
) -> tuple[Worker, bool]:
    """Register a worker, or re-register the one of the same name (an agent restarted
    under its name keeps its row and history). Returns (worker, created)."""
    now = clock.now()
    name = name or f"{type}-{uuid7().hex[-12:]}"
    values = {
        "type": type,
        "labels": labels or {},
        "capacity": capacity,
        "hostname": hostname or socket.gethostname(),
        "version": version,
        "pid": pid,
        "status": WorkerStatus.ONLINE,
        "registered_at": now,
        "last_heartbeat_at": now,
        "stopped_at": None,
    }
    try:
        with transaction.atomic():
            worker, created = Worker.objects.update_or_create(name=name, defaults=values)
    except IntegrityError:
        # Two registrations of one name raced; the other one created the row.
        worker, created = Worker.objects.update_or_create(name=name, defaults=values)[0], False
    return worker, created
