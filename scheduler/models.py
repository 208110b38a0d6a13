from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from hodei.lib import clock
from hodei.lib.ids import uuid7
from orchestrator.models import worker_type_validator
from scheduler.choices import (
    FireOutcome,
    MisfirePolicy,
    OverlapPolicy,
    ScheduleStatus,
    WorkerStatus,
)


class Schedule(models.Model):
    """When a job runs by itself: a cron expression in a timezone, or one moment."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    job = models.ForeignKey("orchestrator.Job", on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(max_length=200, blank=True, default="")
    cron = models.CharField(max_length=200, blank=True, default="")
    timezone = models.CharField(max_length=64, default="UTC")
    schedule_time = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=ScheduleStatus.choices, default=ScheduleStatus.SCHEDULED
    )
    enabled = models.BooleanField(default=True)
    overlap_policy = models.CharField(
        max_length=16, choices=OverlapPolicy.choices, default=OverlapPolicy.FORBID
    )
    misfire_policy = models.CharField(
        max_length=16, choices=MisfirePolicy.choices, default=MisfirePolicy.RUN_ONCE
    )
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
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
            )
        ]
        indexes = [
            models.Index(fields=["job", "-id"], name="schedule_job_idx"),
            models.Index(fields=["status", "next_run_at"], name="schedule_due_idx"),
        ]

    def __str__(self) -> str:
        return self.name or self.cron or f"once at {self.schedule_time:%Y-%m-%d %H:%M:%S}"

    @property
    def is_active(self) -> bool:
        return self.enabled and self.status == ScheduleStatus.SCHEDULED

    def pause(self, *, now) -> None:
        self.enabled = False
        if self.status == ScheduleStatus.SCHEDULED:
            self.status = ScheduleStatus.PAUSED
        self.next_run_at = None
        self.updated_at = now
        self.save(update_fields=["enabled", "status", "next_run_at", "updated_at"])

    def resume(self, *, next_run_at, now) -> None:
        """Back to scheduled from the next slot on: slots missed while paused never fire."""
        self.enabled = True
        if self.status == ScheduleStatus.PAUSED:
            self.status = ScheduleStatus.SCHEDULED
        self.next_run_at = next_run_at if self.status == ScheduleStatus.SCHEDULED else None
        self.updated_at = now
        self.save(update_fields=["enabled", "status", "next_run_at", "updated_at"])

    def advance(self, *, fired_slot, next_run_at, now) -> None:
        """Record that ``fired_slot`` was handled; a one-off schedule is then completed."""
        self.last_run_at = fired_slot
        self.next_run_at = next_run_at
        if next_run_at is None and self.schedule_time is not None:
            self.status = ScheduleStatus.COMPLETED
        self.updated_at = now
        self.save(update_fields=["last_run_at", "next_run_at", "status", "updated_at"])


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
        return f"{self.schedule_id} {self.slot_at:%Y-%m-%d %H:%M:%S} {self.outcome}"

    @property
    def lag_ms(self) -> int:
        return int((self.fired_at - self.slot_at).total_seconds() * 1000)


class Worker(models.Model):
    """An agent that can run work, as it registered itself; kept alive by heartbeats."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    name = models.CharField(max_length=200, unique=True)
    type = models.CharField(max_length=64, validators=[worker_type_validator])
    labels = models.JSONField(default=dict, blank=True)
    capacity = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(1024)]
    )
    hostname = models.CharField(max_length=255, blank=True, default="")
    version = models.CharField(max_length=64, blank=True, default="")
    pid = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=WorkerStatus.choices, default=WorkerStatus.ONLINE
    )
    registered_at = models.DateTimeField(default=clock.now)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["status", "last_heartbeat_at"], name="worker_status_idx"),
            models.Index(fields=["type", "-id"], name="worker_type_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def liveness(self, *, now) -> str:
        """online, draining, stale (not offline, but its heartbeat is more than two
        intervals old) or offline: what the admin, the dashboard and /metrics show."""
        if self.status == WorkerStatus.OFFLINE:
            return "offline"
        stale_after = timedelta(seconds=settings.HODEI_HEARTBEAT_SECONDS * 2)
        if self.last_heartbeat_at is None or now - self.last_heartbeat_at > stale_after:
            return "stale"
        return self.status

    def heartbeat(self, *, now=None) -> None:
        """Record that the worker is alive; an offline worker comes back online.

        A draining worker stays draining: a heartbeat must not undo an operator's drain."""
        now = now or clock.now()
        self.last_heartbeat_at = now
        fields = ["last_heartbeat_at"]
        if self.status == WorkerStatus.OFFLINE:
            self.status = WorkerStatus.ONLINE
            self.stopped_at = None
            fields += ["status", "stopped_at"]
        self.save(update_fields=fields)

    def go_offline(self, *, now=None) -> None:
        if self.status != WorkerStatus.OFFLINE:
            self.status = WorkerStatus.OFFLINE
            self.stopped_at = now or clock.now()
            self.save(update_fields=["status", "stopped_at"])

    def drain(self) -> None:
        if self.status == WorkerStatus.ONLINE:
            self.status = WorkerStatus.DRAINING
            self.save(update_fields=["status"])

    def undrain(self) -> None:
        if self.status == WorkerStatus.DRAINING:
            self.status = WorkerStatus.ONLINE
            self.save(update_fields=["status"])
