"""Workflows on schedules.

A schedule runs a job (each slot queues an execution) or a pipeline (each slot starts a
pipeline run). Firing: each active Hodei schedule has a django-q2 Schedule row named ``hodei:<id>``
(type ONCE, ``next_run`` = the Hodei schedule's next slot) whose function,
``scheduler.tasks.fire_schedule``, calls ``schedule_fire``. That handles the slot (overlap
and misfire policies, history), queues the execution, and points the django-q2 row at
the following slot. django-q2 runs the firing; Hodei decides the times (cron in the
schedule's timezone with its DST rules). See docs/scheduling.md."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django_q.models import Schedule as EngineSchedule

from hodei.exceptions import Conflict, InvalidInput, QuotaExceeded
from hodei.lib import clock
from orchestrator.choices import PipelineStatus
from orchestrator.models import Job, Pipeline
from pipelines.choices import ACTIVE_RUN, RunTrigger
from pipelines.models import PipelineRun
from pipelines.services import pipeline_run_cancel, pipeline_run_start
from scheduler import outbox
from scheduler.choices import (
    FireOutcome,
    MisfirePolicy,
    OverlapPolicy,
    ScheduleStatus,
)
from scheduler.cron import CronError, next_fire_times, parse_timezone, validate_cron
from scheduler.models import Schedule, ScheduleFire
from telemetry import metrics
from workermanager.choices import ACTIVE, Trigger
from workermanager.models import Execution
from workermanager.services import execution_cancel, execution_enqueue

ENGINE_PREFIX = "hodei:"
ENGINE_FUNC = "scheduler.tasks.fire_schedule"
SCHEDULES_CHANNEL = "hodei_schedules"
# The ticker looks at the schedules at least this often (scheduler/ticker.py).
TICKER_HORIZON_SECONDS = 1.0
# Enumerating missed slots stops here (a per-second schedule down for a week).
MAX_MISSED_SLOTS = 10_000

UPCOMING_COUNT = 5


def schedule_upcoming(
    schedule: Schedule, *, count: int = UPCOMING_COUNT, now=None
) -> list[datetime]:
    """The next fire times of an active schedule, as aware UTC datetimes."""
    if not schedule.is_active:
        return []
    now = now or clock.now()
    if schedule.cron:
        after = max(now, schedule.last_run_at) if schedule.last_run_at else now
        return next_fire_times(schedule.cron, schedule.timezone, after=after, count=count)
    if schedule.schedule_time and schedule.last_run_at is None:
        return [schedule.schedule_time]
    return []


def validate_timing(*, cron: str, schedule_time, timezone: str) -> str:
    """Exactly one of ``cron`` and ``schedule_time``, a valid cron expression and an IANA
    timezone; returns the normalised cron. Raises InvalidInput naming each bad field (the
    API answers 400 with it, the admin's form shows it on the fields)."""
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
        else:
            gap = _shortest_gap(cron)
            minimum = settings.HODEI_MIN_SCHEDULE_INTERVAL_SECONDS
            if gap is not None and gap < minimum:
                errors["cron"] = [
                    f"It fires every {gap:g} s at times; the shortest interval allowed is "
                    f"{minimum} s (HODEI_MIN_SCHEDULE_INTERVAL_SECONDS)."
                ]
    if errors:
        raise InvalidInput("Invalid schedule.", fields=errors)
    return cron


def _shortest_gap(cron: str) -> float | None:
    """The shortest time between two fires of ``cron`` over its next dozen (the same at
    any time of day for the expressions a minimum interval is about)."""
    times = next_fire_times(cron, "UTC", after=clock.now(), count=12)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    return min(gaps) if gaps else None


def _target(job: Job | None, pipeline: Pipeline | None) -> None:
    if (job is None) == (pipeline is None):
        message = "Give exactly one of job_id and pipeline_id."
        raise InvalidInput(message, fields={"job_id": [message], "pipeline_id": [message]})


def _check_quota(*, job: Job | None = None, pipeline: Pipeline | None = None, excluding=None):
    """A schedule more for ``job`` (or ``pipeline``), within HODEI_MAX_SCHEDULES and
    HODEI_MAX_SCHEDULES_PER_JOB (which bounds a pipeline's too)."""
    others = Schedule.objects.exclude(pk=excluding.pk) if excluding else Schedule.objects
    mine = others.filter(job=job) if job is not None else others.filter(pipeline=pipeline)
    if mine.count() >= settings.HODEI_MAX_SCHEDULES_PER_JOB:
        what, field = ("job", "job_id") if job is not None else ("pipeline", "pipeline_id")
        raise QuotaExceeded(
            f"This {what} has {settings.HODEI_MAX_SCHEDULES_PER_JOB} schedules, the most a "
            f"{what} may have (HODEI_MAX_SCHEDULES_PER_JOB).",
            fields={field: [f"Too many schedules for this {what}."]},
        )
    if others.count() >= settings.HODEI_MAX_SCHEDULES:
        raise QuotaExceeded(
            f"There are {settings.HODEI_MAX_SCHEDULES} schedules, the most allowed "
            "(HODEI_MAX_SCHEDULES)."
        )


def schedule_makes_commands_run(*, schedule: Schedule | None, changes: dict) -> bool:
    """Whether creating a schedule (``schedule`` None) or changing it with ``changes``
    makes commands run, so that it needs the run permission (API and admin alike):
    creating it enabled, enabling a paused one, or pointing it at another job or
    pipeline."""
    if schedule is None:
        return bool(changes.get("enabled", True))
    if changes.get("enabled") and not schedule.enabled:
        return True
    return any(
        name in changes and changes[name] != getattr(schedule, name) for name in ("job", "pipeline")
    )


def schedule_create(
    *,
    job: Job | None = None,
    pipeline: Pipeline | None = None,
    cron: str = "",
    schedule_time: datetime | None = None,
    timezone: str = "UTC",
    name: str = "",
    enabled: bool = True,
    overlap_policy: str = Schedule._meta.get_field("overlap_policy").default,
    misfire_policy: str = Schedule._meta.get_field("misfire_policy").default,
    alert_after_seconds: int | None = None,
) -> Schedule:
    _target(job, pipeline)
    cron = validate_timing(cron=cron, schedule_time=schedule_time, timezone=timezone)
    _check_quota(job=job, pipeline=pipeline)
    now = clock.now()
    schedule = Schedule(
        job=job,
        pipeline=pipeline,
        cron=cron,
        schedule_time=schedule_time,
        timezone=timezone,
        name=name,
        status=ScheduleStatus.SCHEDULED if enabled else ScheduleStatus.PAUSED,
        overlap_policy=overlap_policy,
        misfire_policy=misfire_policy,
        alert_after_seconds=alert_after_seconds,
        alert_from=now if alert_after_seconds else None,
        created_at=now,
        updated_at=now,
    )
    upcoming = schedule_upcoming(schedule, count=1, now=now)
    schedule.next_run_at = upcoming[0] if upcoming else None
    with transaction.atomic():
        schedule.save()
        _sync_engine(schedule)
    return schedule


TIMING_FIELDS = ("cron", "timezone", "schedule_time")
PLAIN_FIELDS = (
    "name",
    "overlap_policy",
    "misfire_policy",
    "job",
    "pipeline",
    "alert_after_seconds",
)


@transaction.atomic
def schedule_update(*, schedule: Schedule, enabled: bool | None = None, **fields) -> Schedule:
    """Change a schedule: pause or resume it (``enabled``), or change its timing, after
    which the next fire times are computed afresh from now (no burst of old slots)."""
    unknown = set(fields) - set(TIMING_FIELDS) - set(PLAIN_FIELDS)
    if unknown:
        raise TypeError(f"Unknown fields: {sorted(unknown)}")
    # Locked: a firing of this schedule (which also locks it) waits for the change.
    schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
    if fields.get("job") is not None:
        fields.setdefault("pipeline", None)  # pointing it at a job replaces its pipeline
    elif fields.get("pipeline") is not None:
        fields.setdefault("job", None)
    if "job" in fields or "pipeline" in fields:
        job = fields.get("job", schedule.job)
        pipeline = fields.get("pipeline", schedule.pipeline)
        _target(job, pipeline)
        if (job and job.pk != schedule.job_id) or (
            pipeline and pipeline.pk != schedule.pipeline_id
        ):
            _check_quota(job=job, pipeline=pipeline, excluding=schedule)
    now = clock.now()
    timing = {k: fields[k] for k in TIMING_FIELDS if k in fields}
    if timing:
        merged = {k: timing.get(k, getattr(schedule, k)) for k in TIMING_FIELDS}
        # Giving one kind of timing replaces the other.
        if timing.get("cron") and "schedule_time" not in timing:
            merged["schedule_time"] = None
        if timing.get("schedule_time") is not None and "cron" not in timing:
            merged["cron"] = ""
        merged["cron"] = validate_timing(**merged)
        fields.update(merged)
        if merged["schedule_time"] is not None and "schedule_time" in timing:
            fields["last_run_at"] = None  # a new one-off time: it has not fired yet
    if "alert_after_seconds" in fields and fields["alert_after_seconds"] != (
        schedule.alert_after_seconds
    ):
        schedule.rearm_alerting(now=now)
    for name, value in fields.items():
        setattr(schedule, name, value)
    schedule.updated_at = now
    schedule.save()
    if timing:
        schedule.rearm(next_run_at=_next_slot(schedule, after=now), now=now)
    if enabled is False:
        schedule.pause(now=now)
    elif enabled is True:
        if schedule.status == ScheduleStatus.PAUSED:
            schedule.rearm_alerting(now=now)  # slots missed while paused do not alert
        schedule.resume(next_run_at=_next_slot(schedule, after=now), now=now)
    _sync_engine(schedule)
    return schedule


@transaction.atomic
def schedule_delete(*, schedule: Schedule) -> None:
    EngineSchedule.objects.filter(name=ENGINE_PREFIX + str(schedule.pk)).delete()
    schedule.delete()


def _next_slot(schedule: Schedule, *, after: datetime) -> datetime | None:
    if schedule.cron:
        times = next_fire_times(schedule.cron, schedule.timezone, after=after, count=1)
        return times[0] if times else None
    if schedule.schedule_time is not None and schedule.last_run_at is None:
        return schedule.schedule_time
    return None


def _due_slots(schedule: Schedule, *, first: datetime, now: datetime) -> list[datetime]:
    """``first`` and every later slot up to ``now``, oldest first."""
    slots = [first]
    if schedule.cron:
        while len(slots) < MAX_MISSED_SLOTS:
            nxt = next_fire_times(schedule.cron, schedule.timezone, after=slots[-1], count=1)
            if not nxt or nxt[0] > now:
                break
            slots.append(nxt[0])
    return slots


def _sync_engine(schedule: Schedule) -> None:
    """Point this schedule's django-q2 row at its next slot, or remove it."""
    name = ENGINE_PREFIX + str(schedule.pk)
    if schedule.is_active and schedule.next_run_at is not None:
        EngineSchedule.objects.update_or_create(
            name=name,
            defaults={
                "func": ENGINE_FUNC,
                "args": repr(str(schedule.pk)),
                "schedule_type": EngineSchedule.ONCE,
                # ONCE with repeats=1: django-q2 fires it and keeps the row (repeats=0)
                # for us to point at the next slot, instead of deleting it.
                "repeats": 1,
                "next_run": schedule.next_run_at,
                "intended_date_kwarg": "slot",
            },
        )
        soon = schedule.next_run_at - clock.now() < timedelta(seconds=TICKER_HORIZON_SECONDS)
        if soon and connection.vendor == "postgresql":
            # Wakes the ticker in every qcluster (delivered on commit). Only for a slot
            # sooner than the ticker's own next look: each NOTIFY serialises commits.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [SCHEDULES_CHANNEL, str(schedule.pk)])
    else:
        EngineSchedule.objects.filter(name=name).delete()


@transaction.atomic
def schedule_fire(*, schedule_id, slot: datetime | None = None) -> ScheduleFire | None:
    """Handle the slot ``slot`` of a schedule (django-q2 calls this through
    ``scheduler.tasks.fire_schedule``). Idempotent: a slot already handled, a stale call
    or an inactive schedule changes nothing."""
    # Lock the schedule: fires of one schedule are serialised, so the overlap check and
    # the advance to the next slot cannot interleave.
    schedule = (
        Schedule.objects.select_for_update(of=("self",))
        .select_related("job__pipeline", "pipeline")
        .filter(pk=schedule_id)
        .first()
    )
    if schedule is None:
        EngineSchedule.objects.filter(name=ENGINE_PREFIX + str(schedule_id)).delete()
        return None
    return _fire_locked(schedule, slot=slot, now=clock.now())


# A burst of due schedules is fired in transactions of at most this many: few commits,
# yet each slot's execution is visible soon after its fire is recorded.
FIRE_BATCH = 25


def schedules_fire_due(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Fire every schedule whose slot is due, in the calling process (the ticker), in a
    few transactions of FIRE_BATCH schedules, instead of one django-q2 task (and a
    worker's turn, and five commits) per firing: a hundred schedules due in the same
    second fire in a few hundred milliseconds. Returns how many were fired.

    The rows are locked FOR UPDATE SKIP LOCKED: two tickers take disjoint schedules
    (and a fire task of the same schedule waits, then finds its slot handled). Each
    schedule's engine row is pointed at its next slot in the same transaction, so
    django-q2's ``scheduler()`` does not fire it again; whatever is left (a batch that
    failed, a schedule without its row) is fired the usual way, one task each."""
    fired = 0
    while fired < limit:
        with transaction.atomic():
            due = list(
                Schedule.objects.select_for_update(of=("self",), skip_locked=True)
                .select_related("job__pipeline", "pipeline")
                .filter(status=ScheduleStatus.SCHEDULED, next_run_at__lte=now or clock.now())
                .order_by("next_run_at", "id")[:FIRE_BATCH]
            )
            engines: list = []
            for schedule in due:
                _fire_locked(schedule, slot=None, now=clock.now(), engines=engines)
            _sync_engines(engines)
        fired += len(due)
        if len(due) < FIRE_BATCH:
            return fired
    return fired


def _fire_locked(
    schedule: Schedule, *, slot: datetime | None, now: datetime, engines: list | None = None
) -> ScheduleFire | None:
    """``schedule_fire`` once the schedule's row is locked. With ``engines``, the engine
    row's new slot is added to it (the caller writes them all at once) rather than
    written here."""

    def sync() -> None:
        if engines is not None and schedule.is_active and schedule.next_run_at is not None:
            engines.append(schedule)
        else:
            _sync_engine(schedule)

    if not schedule.is_active:
        sync()
        return None
    slot = slot or schedule.next_run_at
    if slot is None or slot > now or (schedule.last_run_at and slot <= schedule.last_run_at):
        sync()
        return None

    due = _due_slots(schedule, first=slot, now=now)
    grace = timedelta(seconds=settings.HODEI_MISFIRE_GRACE_SECONDS)
    late = [s for s in due if now - s > grace]
    on_time = [s for s in due if now - s <= grace]
    fire = None
    if late and schedule.misfire_policy == MisfirePolicy.SKIP:
        if _record(schedule, late[0], FireOutcome.MISSED, detail=_span(late), now=now):
            metrics.inc("hodei_schedule_slots_missed_total", len(late), policy="skip")
    elif late:
        # run_once: one run covers every late slot, never a burst. If a slot is also on
        # time, that run is it; otherwise one catch-up run for the latest late slot.
        covered = late if on_time else late[:-1]
        if covered and _record(
            schedule, covered[0], FireOutcome.CAUGHT_UP, detail=_span(covered), now=now
        ):
            metrics.inc("hodei_schedule_slots_missed_total", len(covered), policy="run_once")
        if not on_time:
            fire = _fire_slot(schedule, late[-1], now=now, detail=f"catch-up ({len(late)} late)")
    # Slots within the grace period are not misfires: each fires (a scheduler that was
    # briefly behind catches up slot by slot; the overlap policy still applies).
    for on_time_slot in on_time:
        fire = _fire_slot(schedule, on_time_slot, now=now) or fire
    schedule.advance(fired_slot=due[-1], next_run_at=_next_slot_after(schedule, due[-1]), now=now)
    sync()
    return fire


def _sync_engines(schedules: list[Schedule]) -> None:
    """``_sync_engine`` for many active schedules: their existing engine rows pointed at
    their next slots in one UPDATE (and one NOTIFY if any is sooner than the ticker's
    next look); a missing row is made the usual way."""
    if not schedules:
        return
    by_name = {ENGINE_PREFIX + str(s.pk): s for s in schedules}
    table = EngineSchedule._meta.db_table
    if connection.vendor == "postgresql":
        values = ", ".join(["(%s, %s::timestamptz)"] * len(by_name))
        params = [v for name, s in by_name.items() for v in (name, s.next_run_at)]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} AS e SET next_run = v.next_run, repeats = 1 "
                f"FROM (VALUES {values}) AS v(name, next_run) WHERE e.name = v.name "
                "RETURNING e.name",
                params,
            )
            updated = {row[0] for row in cursor.fetchall()}
        soon = clock.now() + timedelta(seconds=TICKER_HORIZON_SECONDS)
        if any(s.next_run_at < soon for s in by_name.values()):
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [SCHEDULES_CHANNEL, "burst"])
    else:
        updated = set()
    for name, schedule in by_name.items():
        if name not in updated:
            _sync_engine(schedule)


def _next_slot_after(schedule: Schedule, slot: datetime) -> datetime | None:
    if schedule.cron:
        return _next_slot(schedule, after=slot)
    return None


def _span(slots: list[datetime]) -> str:
    if len(slots) == 1:
        return "1 slot"
    return f"{len(slots)} slots, {slots[0].isoformat()} to {slots[-1].isoformat()}"


def _record(schedule, slot, outcome, *, now, execution=None, detail="", is_manual=False):
    """Claim ``slot`` in the history; None if it was handled already."""
    try:
        with transaction.atomic():
            fire = ScheduleFire.objects.create(
                schedule=schedule,
                slot_at=slot,
                outcome=outcome,
                execution=execution,
                detail=detail[:255],
                is_manual=is_manual,
                fired_at=now,
            )
    except IntegrityError:
        return None
    if outcome != FireOutcome.FIRED:  # a fired slot tells of itself once its run exists
        outbox.fire_event(schedule, fire)
    return fire


def _fire_slot(schedule, slot, *, now, detail="", is_manual=False) -> ScheduleFire | None:
    """Apply the pipeline's status and the overlap policy, and queue the execution (or
    start the pipeline run) for ``slot``."""
    pipeline = schedule.pipeline if schedule.pipeline_id else schedule.job.pipeline

    def skip(outcome, reason, detail):
        skipped = _record(schedule, slot, outcome, detail=detail, now=now, is_manual=is_manual)
        if skipped:
            metrics.inc("hodei_schedule_slots_skipped_total", reason=reason)
        return skipped

    if pipeline is not None and pipeline.status != PipelineStatus.ACTIVE:
        detail = f"pipeline {pipeline} is {pipeline.status}"
        return skip(FireOutcome.SKIPPED_PAUSED, "paused", detail)
    active = _active_runs(schedule)
    if active and schedule.overlap_policy == OverlapPolicy.FORBID:
        detail = f"previous run {active[0].pk} still {active[0].status}"
        return skip(FireOutcome.SKIPPED_OVERLAP, "overlap", detail)
    claim = _record(schedule, slot, FireOutcome.FIRED, detail=detail, now=now, is_manual=is_manual)
    if claim is None:
        return None
    if active and schedule.overlap_policy == OverlapPolicy.REPLACE:
        for previous in active:
            try:
                if schedule.pipeline_id:
                    pipeline_run_cancel(run=previous)
                else:
                    execution_cancel(execution=previous)
            except Conflict:
                pass  # it finished meanwhile
        claim.outcome = FireOutcome.REPLACED
        claim.detail = f"cancelled {len(active)} previous run(s)"
    if schedule.pipeline_id:
        claim.pipeline_run = pipeline_run_start(
            pipeline=schedule.pipeline,
            trigger=RunTrigger.SCHEDULE,
            schedule=schedule,
            scheduled_for=slot,
        )
    else:
        claim.execution = execution_enqueue(
            job=schedule.job, trigger=Trigger.SCHEDULE, schedule=schedule, scheduled_for=slot
        )
    claim.save(update_fields=["execution", "pipeline_run", "outcome", "detail"])
    outbox.fire_event(schedule, claim)
    if not is_manual:
        metrics.observe("hodei_schedule_fire_lag_seconds", claim.lag_ms / 1000)
    return claim


def _active_runs(schedule: Schedule) -> list:
    """What the overlap policy looks at: the schedule's active executions, or, for a
    pipeline, every active run of the pipeline (however it was started)."""
    if schedule.pipeline_id:
        return list(
            PipelineRun.objects.filter(pipeline_id=schedule.pipeline_id, status__in=ACTIVE_RUN)
        )
    return list(Execution.objects.filter(schedule=schedule, status__in=ACTIVE))


@transaction.atomic
def schedule_run_now(*, schedule: Schedule) -> ScheduleFire:
    """Fire now, outside the schedule's slots, respecting its overlap policy."""
    schedule = (
        Schedule.objects.select_for_update(of=("self",))
        .select_related("job__pipeline", "pipeline")
        .get(pk=schedule.pk)
    )
    now = clock.now()
    return _fire_slot(schedule, now, now=now, detail="run now", is_manual=True)


def schedules_resync(*, now: datetime | None = None) -> int:
    """Safety net (periodic): an active schedule whose engine row is missing or spent
    while its slot has passed (a firing task that failed for good) is fired now."""
    now = now or clock.now()
    stale = 0
    overdue = Schedule.objects.filter(
        status=ScheduleStatus.SCHEDULED, next_run_at__lt=now - timedelta(seconds=60)
    )
    for schedule in overdue.only("id"):
        row = EngineSchedule.objects.filter(name=ENGINE_PREFIX + str(schedule.pk)).first()
        if row is None or row.repeats == 0:
            schedule_fire(schedule_id=schedule.pk)
            stale += 1
    return stale
