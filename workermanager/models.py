from datetime import datetime, timedelta

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction

from hodei.exceptions import InvalidTransition
from hodei.lib import clock
from hodei.lib.ids import uuid7
from orchestrator.choices import CommandType
from orchestrator.models import MAX_TIMEOUT_SECONDS, worker_type_validator
from telemetry import metrics
from workermanager.choices import (
    TERMINAL,
    ExecutionStatus,
    LogStream,
    ManagedWorkerStatus,
    Trigger,
)

S = ExecutionStatus


class ManagedWorker(models.Model):
    """A worker agent process that Hodei started itself through a provider."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    name = models.CharField(max_length=200, unique=True)
    type = models.CharField(max_length=64, validators=[worker_type_validator])
    concurrency = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(64)]
    )
    labels = models.JSONField(default=dict, blank=True)
    provider = models.CharField(max_length=32, default="local")
    status = models.CharField(
        max_length=16, choices=ManagedWorkerStatus.choices, default=ManagedWorkerStatus.STARTING
    )
    pid = models.PositiveIntegerField(null=True, blank=True)
    host = models.CharField(max_length=255, blank=True, default="")
    worker = models.ForeignKey(
        "scheduler.Worker",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="managed_by",
        help_text="The Worker row the agent registered as.",
    )
    failure_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=clock.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "-id"], name="managedworker_status_idx")]

    def __str__(self) -> str:
        return self.name

    def mark_running(self, *, pid: int, host: str, worker, now: datetime) -> None:
        self._move({ManagedWorkerStatus.STARTING}, ManagedWorkerStatus.RUNNING)
        self.pid, self.host, self.worker, self.started_at = pid, host, worker, now
        self.save(update_fields=["status", "pid", "host", "worker", "started_at"])

    def mark_failed(self, *, reason: str, now: datetime) -> None:
        self._move(
            {ManagedWorkerStatus.STARTING, ManagedWorkerStatus.RUNNING}, ManagedWorkerStatus.FAILED
        )
        self.failure_reason, self.stopped_at = reason, now
        self.save(update_fields=["status", "failure_reason", "stopped_at"])

    def mark_stopping(self) -> None:
        self._move(
            {ManagedWorkerStatus.STARTING, ManagedWorkerStatus.RUNNING},
            ManagedWorkerStatus.STOPPING,
        )
        self.save(update_fields=["status"])

    def mark_stopped(self, *, now: datetime, reason: str = "") -> None:
        self._move(
            {
                ManagedWorkerStatus.STARTING,
                ManagedWorkerStatus.RUNNING,
                ManagedWorkerStatus.STOPPING,
            },
            ManagedWorkerStatus.STOPPED,
        )
        self.stopped_at = now
        fields = ["status", "stopped_at"]
        if reason:
            self.failure_reason = reason
            fields.append("failure_reason")
        self.save(update_fields=fields)

    def _move(self, allowed: set, target: str) -> None:
        if self.status not in allowed:
            raise InvalidTransition(f"Managed worker is {self.status}; cannot become {target}.")
        self.status = target


class Execution(models.Model):
    """One attempt at running a command. A retry is a new Execution (``attempt`` + 1,
    ``retry_of`` the previous one), so every attempt keeps its own log.

    Transitions are conditional UPDATEs (``WHERE status IN ...``) whose row count is
    checked, so two racing reporters (a worker and the reaper, an API cancel and a
    finishing worker) can never both win, and a late report changes nothing.
    """

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    job = models.ForeignKey(
        "orchestrator.Job",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="executions",
    )
    command = models.TextField(blank=True, default="")
    type = models.CharField(max_length=16, choices=CommandType.choices, default=CommandType.BASH)
    worker_type = models.CharField(
        max_length=64, blank=True, default="", validators=[worker_type_validator]
    )
    env = models.JSONField(default=dict, blank=True)
    timeout_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_TIMEOUT_SECONDS)],
    )
    status = models.CharField(max_length=16, choices=ExecutionStatus.choices, default=S.QUEUED)
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(
        blank=True, default="", help_text="Why it failed, if not by exit code."
    )
    worker = models.ForeignKey(
        "scheduler.Worker",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="executions",
    )
    attempt = models.PositiveIntegerField(default=1)
    retry_of = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retried_by"
    )
    retries_used = models.PositiveIntegerField(default=0)
    lost_retries_used = models.PositiveIntegerField(default=0)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.API)
    schedule = models.ForeignKey(
        "scheduler.Schedule",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="executions",
    )
    scheduled_for = models.DateTimeField(
        null=True, blank=True, help_text="The schedule slot this execution stands for."
    )
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=clock.now, editable=False, db_index=True)
    available_at = models.DateTimeField(
        default=clock.now, help_text="Not claimed before this time (retry backoff)."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    log_bytes = models.BigIntegerField(default=0)
    log_truncated = models.BooleanField(default=False)
    trace_id = models.CharField(
        max_length=32, blank=True, default="", help_text="OpenTelemetry trace of its life."
    )
    trace_parent = models.CharField(
        max_length=64, blank=True, default="", help_text="W3C traceparent of the enqueue span."
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            # A schedule slot yields at most one execution, however many schedulers fire.
            models.UniqueConstraint(
                fields=["schedule", "scheduled_for"],
                condition=models.Q(schedule__isnull=False, scheduled_for__isnull=False),
                name="execution_one_per_schedule_slot",
            ),
        ]
        indexes = [
            # The claim query: oldest queued first, per worker type.
            models.Index(
                fields=["id"],
                condition=models.Q(status="queued"),
                name="execution_queue_idx",
            ),
            models.Index(
                fields=["worker", "id"],
                condition=models.Q(status="running"),
                name="execution_running_idx",
            ),
            models.Index(fields=["status", "-id"], name="execution_status_idx"),
            models.Index(fields=["job", "-id"], name="execution_job_idx"),
            models.Index(fields=["worker", "-id"], name="execution_worker_idx"),
            models.Index(fields=["type", "-id"], name="execution_type_idx"),
            models.Index(fields=["trigger", "-id"], name="execution_trigger_idx"),
            models.Index(fields=["worker_type", "-id"], name="execution_worker_type_idx"),
        ]

    def __str__(self) -> str:
        return str(self.id)

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None:
            return None
        end = self.finished_at
        if end is None:
            return None
        return int((end - self.started_at).total_seconds() * 1000)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    # -- transitions -------------------------------------------------------------

    @classmethod
    def claim(cls, *, worker, limit: int, now: datetime) -> list["Execution"]:
        """queued -> running for up to ``limit`` executions that ``worker`` may run
        (its type, or any type), oldest first, in one short transaction.

        FOR UPDATE SKIP LOCKED: concurrent claimers lock disjoint rows and never wait on
        each other, so no execution is claimed twice. On SQLite the IMMEDIATE transaction
        serialises claimers instead."""
        with transaction.atomic():
            rows = list(
                cls.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(status=S.QUEUED, available_at__lte=now)
                .filter(models.Q(worker_type="") | models.Q(worker_type=worker.type))
                .select_related("job")
                .order_by("id")[:limit]
            )
            for row in rows:
                row.status = S.RUNNING
                row.worker = worker
                row.started_at = now
                if row.timeout_seconds:
                    row.deadline_at = now + timedelta(seconds=row.timeout_seconds)
            if rows:
                cls.objects.bulk_update(rows, ["status", "worker", "started_at", "deadline_at"])
                for row in rows:
                    if row.job_id:
                        row._mirror_status_to_job()
                    metrics.execution_claimed(row)
        return rows

    def _transition(self, allowed: set, target: str, *, extra_filter=None, **fields) -> bool:
        """Move to ``target`` if the row is still in one of ``allowed``; returns whether
        this call made the move. The in-memory object is refreshed either way."""
        rows = Execution.objects.filter(pk=self.pk, status__in=allowed)
        if extra_filter:
            rows = rows.filter(**extra_filter)
        changed = rows.update(status=target, **fields) == 1
        if changed:
            self.status = target
            for name, value in fields.items():
                setattr(self, name, value)
            if self.job_id:
                self._mirror_status_to_job()
            if target in TERMINAL:
                metrics.execution_finished(self)
        else:
            self.refresh_from_db()
        return changed

    def _mirror_status_to_job(self) -> None:
        from orchestrator.models import Job

        # Only the job's newest execution speaks for it (ids sort by creation).
        newer = Execution.objects.filter(job_id=self.job_id, id__gt=self.id)
        Job.objects.filter(pk=self.job_id).exclude(models.Exists(newer)).update(status=self.status)

    def start(self, *, worker, now: datetime) -> None:
        """queued -> running, claimed by ``worker``."""
        deadline = now + timedelta(seconds=self.timeout_seconds) if self.timeout_seconds else None
        if not self._transition(
            {S.QUEUED}, S.RUNNING, worker=worker, started_at=now, deadline_at=deadline
        ):
            raise InvalidTransition(f"Execution is {self.status}; only a queued one can start.")
        metrics.execution_claimed(self)

    def finish(self, *, exit_code: int, now: datetime, worker=None, **log_stats) -> bool:
        """running -> succeeded (exit 0) or failed. Returns False, changing nothing, when
        the execution was settled meanwhile (a late report from a lost worker)."""
        target = S.SUCCEEDED if exit_code == 0 else S.FAILED
        return self._transition(
            {S.RUNNING},
            target,
            extra_filter=_by_worker(worker),
            exit_code=exit_code,
            finished_at=now,
            **_log_stats(log_stats),
        )

    def fail(
        self, *, error: str, now: datetime, exit_code: int | None = None, worker=None, **log_stats
    ) -> bool:
        """running -> failed for a reason other than the exit code (it could not start,
        or the control plane gave up on it)."""
        return self._transition(
            {S.RUNNING},
            S.FAILED,
            extra_filter=_by_worker(worker),
            error=error[:2000],
            exit_code=exit_code,
            finished_at=now,
            **_log_stats(log_stats),
        )

    def time_out(
        self, *, now: datetime, exit_code: int | None = None, worker=None, **log_stats
    ) -> bool:
        return self._transition(
            {S.RUNNING},
            S.TIMED_OUT,
            extra_filter=_by_worker(worker),
            exit_code=exit_code,
            error=f"Timed out after {self.timeout_seconds} s.",
            finished_at=now,
            **_log_stats(log_stats),
        )

    def confirm_cancelled(
        self,
        *,
        now: datetime,
        exit_code: int | None = None,
        worker=None,
        error: str = "",
        **log_stats,
    ) -> bool:
        """running -> cancelled, reported by the worker once the process group is gone."""
        return self._transition(
            {S.RUNNING},
            S.CANCELLED,
            extra_filter=_by_worker(worker),
            exit_code=exit_code,
            error=error,
            finished_at=now,
            **_log_stats(log_stats),
        )

    def lose(self, *, now: datetime, reason: str) -> bool:
        """running -> lost: its worker stopped heartbeating."""
        return self._transition({S.RUNNING}, S.LOST, error=reason[:2000], finished_at=now)

    def request_cancel(self, *, now: datetime) -> None:
        """Cancel: a queued execution ends at once; a running one is flagged and its worker
        kills it within a second. Refused (409) once the execution has finished."""
        if self._transition({S.QUEUED}, S.CANCELLED, cancel_requested=True, finished_at=now):
            return
        if self.status == S.RUNNING:
            if Execution.objects.filter(pk=self.pk, status=S.RUNNING).update(cancel_requested=True):
                self.cancel_requested = True
                return
            self.refresh_from_db()
        raise InvalidTransition(f"Execution is already {self.status}; it cannot be cancelled.")


def _log_stats(stats: dict) -> dict:
    unknown = set(stats) - {"log_bytes", "log_truncated"}
    if unknown:
        raise TypeError(f"Unknown fields {sorted(unknown)}")
    return stats


def _by_worker(worker) -> dict:
    # A report counts only from the worker that holds the execution.
    return {"worker": worker} if worker is not None else {}


class ExecutionLog(models.Model):
    """An ordered chunk of an execution's output: one stream, one or more lines.

    Output is stored in chunks (written in batches), not a row per line, so a chatty
    command costs a few INSERTs a second."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: the unique (execution, seq) index serves every lookup.
    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="logs", db_index=False
    )
    seq = models.PositiveIntegerField()
    stream = models.CharField(max_length=8, choices=LogStream.choices)
    message = models.TextField()
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["execution", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "seq"], name="executionlog_seq_unique")
        ]

    def __str__(self) -> str:
        return f"{self.execution_id}#{self.seq}"

    @property
    def level(self) -> str:
        if self.stream == LogStream.STDERR:
            return "error"
        return "info"
