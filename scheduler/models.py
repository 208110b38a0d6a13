from datetime import datetime

from django.db import models

from hodei.exceptions import InvalidTransition
from hodei.lib import clock
from hodei.lib.ids import uuid7
from hodei.lib.validators import plain_text
from scheduler.choices import (
    FireOutcome,
    MisfirePolicy,
    OverlapPolicy,
    ScheduleHealth,
    ScheduleStatus,
)

St = ScheduleStatus


class Schedule(models.Model):
    """When a job, or a whole pipeline, runs by itself: a cron expression in a timezone,
    or one moment. Exactly one of ``job`` and ``pipeline``."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    job = models.ForeignKey(
        "orchestrator.Job",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="schedules",
    )
    pipeline = models.ForeignKey(
        "orchestrator.Pipeline",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="schedules",
        help_text="Instead of a job: each slot starts a run of the whole pipeline.",
    )
    name = models.CharField(max_length=200, blank=True, default="", validators=[plain_text])
    cron = models.CharField(max_length=200, blank=True, default="")
    timezone = models.CharField(max_length=64, default="UTC")
    schedule_time = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=16,
        choices=ScheduleStatus.choices,
        default=St.SCHEDULED,
        help_text="scheduled (fires), paused (does not), completed (a one-off that fired).",
    )
    overlap_policy = models.CharField(
        max_length=16, choices=OverlapPolicy.choices, default=OverlapPolicy.FORBID
    )
    misfire_policy = models.CharField(
        max_length=16, choices=MisfirePolicy.choices, default=MisfirePolicy.RUN_ONCE
    )
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    alert_after_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Dead-man alert: a slot whose run has not succeeded this long after it "
        "turns the schedule down (failed, still running, never started or never fired).",
    )
    alert_from = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Slots before this are not checked."
    )
    health = models.CharField(
        max_length=8, choices=ScheduleHealth.choices, default=ScheduleHealth.UNKNOWN
    )
    health_reason = models.CharField(max_length=255, blank=True, default="")
    down_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now, editable=False)
    updated_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    (models.Q(cron="") & models.Q(schedule_time__isnull=False))
                    | (~models.Q(cron="") & models.Q(schedule_time__isnull=True))
                ),
                name="schedule_cron_xor_time",
            ),
            models.CheckConstraint(
                condition=(
                    (models.Q(job__isnull=False) & models.Q(pipeline__isnull=True))
                    | (models.Q(job__isnull=True) & models.Q(pipeline__isnull=False))
                ),
                name="schedule_job_xor_pipeline",
            ),
        ]
        indexes = [
            models.Index(fields=["job", "-id"], name="schedule_job_idx"),
            models.Index(fields=["pipeline", "-id"], name="schedule_pipeline_idx"),
            models.Index(fields=["status", "next_run_at"], name="schedule_due_idx"),
        ]

    def __str__(self) -> str:
        return self.name or self.cron or f"once at {self.schedule_time:%Y-%m-%d %H:%M:%S}"

    @property
    def is_active(self) -> bool:
        return self.status == St.SCHEDULED

    @property
    def enabled(self) -> bool:
        """The API's switch: anything but paused (a completed one-off is not paused)."""
        return self.status != St.PAUSED

    def pause(self, *, now: datetime) -> None:
        """scheduled -> paused: no slot fires until it is resumed."""
        self._move({St.SCHEDULED, St.PAUSED}, St.PAUSED, next_run_at=None, updated_at=now)

    def resume(self, *, next_run_at: datetime | None, now: datetime) -> None:
        """paused -> scheduled, from the next slot on: slots missed while paused never fire."""
        self._move({St.PAUSED, St.SCHEDULED}, St.SCHEDULED, next_run_at=next_run_at, updated_at=now)

    def advance(self, *, fired_slot: datetime, next_run_at: datetime | None, now) -> None:
        """Record that ``fired_slot`` was handled; a one-off schedule is then completed."""
        target = St.COMPLETED if next_run_at is None and self.schedule_time else St.SCHEDULED
        self._move(
            {St.SCHEDULED},
            target,
            last_run_at=fired_slot,
            next_run_at=next_run_at,
            updated_at=now,
        )

    def rearm(self, *, next_run_at: datetime | None, now: datetime) -> None:
        """A new timing: a completed one-off with a new time is scheduled again; a paused
        schedule stays paused (and has no next run)."""
        target = St.PAUSED if self.status == St.PAUSED else St.SCHEDULED
        self._move(
            set(St),
            target,
            next_run_at=next_run_at if target == St.SCHEDULED else None,
            updated_at=now,
        )

    def record_health(self, *, ok: bool, reason: str, now: datetime) -> str:
        """Up after a success, down (with why, since when) otherwise; returns the health
        it had."""
        previous = self.health
        self.health = ScheduleHealth.UP if ok else ScheduleHealth.DOWN
        self.health_reason = "" if ok else reason[:255]
        if ok:
            self.down_since = None
        elif previous != ScheduleHealth.DOWN:
            self.down_since = now
        self.save(update_fields=["health", "health_reason", "down_since"])
        return previous

    def rearm_alerting(self, *, now: datetime) -> None:
        """Alerting (re)starts now: earlier slots are not held against the schedule."""
        self.alert_from = now
        self.health, self.health_reason, self.down_since = ScheduleHealth.UNKNOWN, "", None
        self.save(update_fields=["alert_from", "health", "health_reason", "down_since"])

    def _move(self, allowed: set, target: str, **fields) -> None:
        """Callers hold the row lock (``select_for_update``), so the check is current."""
        if self.status not in allowed:
            raise InvalidTransition(
                f"Schedule is {self.status}; it cannot become {target}."
                + (
                    " Give it a new schedule_time to run it again."
                    if self.status == St.COMPLETED
                    else ""
                )
            )
        self.status = target
        for name, value in fields.items():
            setattr(self, name, value)
        self.save(update_fields=["status", *fields])


class ScheduleFire(models.Model):
    """The history of a schedule: one row per slot it handled, fired or not.

    (schedule, slot_at) is unique: inserting this row claims the slot, so however many
    schedulers race for it, one handles it."""

    id = models.BigAutoField(primary_key=True)
    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="fires")
    slot_at = models.DateTimeField(help_text="The fire time this row stands for.")
    outcome = models.CharField(max_length=16, choices=FireOutcome.choices)
    execution = models.ForeignKey(
        "workermanager.Execution",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    pipeline_run = models.ForeignKey(
        "pipelines.PipelineRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    is_manual = models.BooleanField(default=False, help_text="Run now, not a slot of the schedule.")
    detail = models.CharField(max_length=255, blank=True, default="")
    fired_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["-slot_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["schedule", "slot_at"], name="schedulefire_one_per_slot"
            )
        ]

    def __str__(self) -> str:
        return f"slot {self.slot_at:%Y-%m-%d %H:%M:%S} UTC"

    @property
    def lag_ms(self) -> int:
        return int((self.fired_at - self.slot_at).total_seconds() * 1000)


class ClusterHeartbeat(models.Model):
    """A qcluster process was alive at ``seen_at`` (its ticker, or its periodic task):
    the scheduler's /health says degraded when none has been seen for a while."""

    name = models.CharField(max_length=255, primary_key=True)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.name
