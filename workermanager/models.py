import json
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, models, transaction

from hodei.exceptions import InvalidTransition
from hodei.lib import clock
from hodei.lib.ids import uuid7
from hodei.lib.rows import fetch_all, from_rows, select_list
from hodei.lib.validators import plain_text
from orchestrator.choices import CommandType
from orchestrator.models import MAX_TIMEOUT_SECONDS, Job, ResourceLimits, worker_type_validator
from workermanager.choices import (
    SOURCES,
    WORKER_OUTCOMES,
    ExecutionStatus,
    Isolation,
    LogStream,
    ManagedWorkerStatus,
    PoolStatus,
    ScaleReason,
    Trigger,
    WorkerStatus,
)

S = ExecutionStatus
M = ManagedWorkerStatus


class Worker(models.Model):
    """An agent that can run work, as it registered itself; kept alive by heartbeats.

    Its table keeps the name it had when the scheduler app owned it."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    name = models.CharField(max_length=200, unique=True, validators=[plain_text])
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
    isolation = models.CharField(
        max_length=16,
        choices=Isolation.choices,
        default=Isolation.NONE,
        help_text="How its commands are isolated from it and from each other.",
    )
    registered_at = models.DateTimeField(default=clock.now)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "scheduler_worker"
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

    def heartbeat(self, *, now: datetime) -> None:
        """Record that the worker is alive; an offline worker comes back online.

        A draining worker stays draining: a heartbeat must not undo an operator's drain."""
        self.last_heartbeat_at = now
        fields = ["last_heartbeat_at"]
        if self.status == WorkerStatus.OFFLINE:
            self.status = WorkerStatus.ONLINE
            self.stopped_at = None
            fields += ["status", "stopped_at"]
        self.save(update_fields=fields)

    def go_offline(self, *, now: datetime) -> bool:
        """Any state -> offline; False (and nothing written) if it was offline already."""
        changed = (
            Worker.objects.filter(pk=self.pk)
            .exclude(status=WorkerStatus.OFFLINE)
            .update(status=WorkerStatus.OFFLINE, stopped_at=now)
        )
        self.refresh_from_db(fields=["status", "stopped_at"])
        return changed == 1

    def drain(self) -> None:
        """online -> draining: it finishes its work and takes no more."""
        self._move(WorkerStatus.ONLINE, WorkerStatus.DRAINING, "only an online worker can drain")

    def undrain(self) -> None:
        """draining -> online."""
        self._move(WorkerStatus.DRAINING, WorkerStatus.ONLINE, "only a draining worker can undrain")

    def _move(self, source: str, target: str, rule: str) -> None:
        if not Worker.objects.filter(pk=self.pk, status=source).update(status=target):
            self.refresh_from_db(fields=["status"])
            raise InvalidTransition(f"Worker {self.name} is {self.status}; {rule}.")
        self.status = target


class RegistrationToken(models.Model):
    """What an operator gives an agent on another machine so that it can register
    itself (``createregistrationtoken``, or the admin). Only its SHA-256 is stored; the
    raw token is shown once. It may be limited to one worker type, give its agents
    labels, expire, and serve a number of registrations; revoking it stops new ones
    (agents that registered keep their own credentials)."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    name = models.CharField(max_length=100, blank=True, validators=[plain_text])
    prefix = models.CharField(
        max_length=24, editable=False, help_text="First characters, to recognise it."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    worker_type = models.CharField(
        max_length=64,
        blank=True,
        default="",
        validators=[worker_type_validator],
        help_text="Agents registering with it are of this type; empty: any type they ask.",
    )
    labels = models.JSONField(
        default=dict, blank=True, help_text="Given to its agents (over their own)."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    uses_left = models.PositiveIntegerField(
        null=True, blank=True, help_text="Registrations it may still serve; empty: no limit."
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(default=clock.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… {self.name}".strip()

    def problem(self, *, now: datetime) -> str:
        """Why it cannot register an agent now, or "" if it can."""
        if self.revoked_at is not None:
            return f"Registration token {self.prefix}… was revoked."
        if self.expires_at is not None and self.expires_at <= now:
            return (
                f"Registration token {self.prefix}… expired at "
                f"{self.expires_at:%Y-%m-%d %H:%M:%S} UTC: create a new one "
                "(hodei createregistrationtoken)."
            )
        if self.uses_left == 0:
            return f"Registration token {self.prefix}… has no registrations left."
        return ""

    def use(self, *, now: datetime) -> bool:
        """Spend one registration: a conditional UPDATE, so that of agents racing for a
        token's last use exactly one gets it. False (nothing written) if it cannot."""
        rows = RegistrationToken.objects.filter(pk=self.pk, revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )
        limited = rows.filter(uses_left__gt=0).update(
            uses_left=models.F("uses_left") - 1, last_used_at=now
        )
        changed = limited or rows.filter(uses_left__isnull=True).update(last_used_at=now)
        self.refresh_from_db(fields=["uses_left", "last_used_at", "revoked_at"])
        return changed == 1

    def revoke(self, *, now: datetime) -> None:
        if not RegistrationToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(
            revoked_at=now
        ):
            raise InvalidTransition(f"Registration token {self.prefix}… was already revoked.")
        self.revoked_at = now


class WorkerCredential(models.Model):
    """The secret one agent authenticates with over HTTP, issued when it registers (or,
    for a managed worker, when the control plane starts it). It is valid only on the
    agent endpoints and only for its worker's own executions. Only its SHA-256 is
    stored. A worker has at most one valid credential: registering again rotates it,
    and revoking it (the admin) stops the agent at its next request."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="credentials")
    prefix = models.CharField(max_length=24, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    registration_token = models.ForeignKey(
        RegistrationToken,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="credentials",
        help_text="The registration token it was issued for, if any.",
    )
    created_at = models.DateTimeField(default=clock.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["worker"],
                condition=models.Q(revoked_at__isnull=True),
                name="workercredential_one_valid_per_worker",
            )
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.worker_id})"

    def refusal(self) -> str:
        """Why an agent holding it is refused, or "" if it is valid."""
        if self.revoked_at is None:
            return ""
        return (
            f"The worker credential {self.prefix}… of worker {self.worker.name} was revoked "
            f"at {self.revoked_at:%Y-%m-%d %H:%M:%S} UTC ({self.revoked_reason or 'revoked'}). "
            "Register the agent again with a registration token."
        )


class WorkerPool(models.Model):
    """Managed workers of one worker type that Hodei starts and stops with the demand
    (``workermanager.pools``): never fewer than ``min_workers`` nor more than
    ``max_workers`` agents, each running ``concurrency`` commands at once. One pool per
    worker type: two would race to serve the same queue."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    worker_type = models.CharField(max_length=64, unique=True, validators=[worker_type_validator])
    provider = models.CharField(max_length=32, default="local")
    min_workers = models.PositiveIntegerField(
        default=0, validators=[MaxValueValidator(1000)], help_text="Kept running even when idle."
    )
    max_workers = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Never more live agents than this, draining ones included.",
    )
    concurrency = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(64)],
        help_text="Commands each agent runs at once.",
    )
    labels = models.JSONField(default=dict, blank=True, help_text="Given to every agent.")
    scale_up_after_seconds = models.PositiveIntegerField(
        default=30,
        validators=[MaxValueValidator(86400)],
        help_text="One more agent when the oldest queued execution of the type has waited "
        "this long, even if the queue fits the free capacity.",
    )
    idle_seconds = models.PositiveIntegerField(
        default=300,
        validators=[MinValueValidator(1), MaxValueValidator(86400)],
        help_text="An agent that ran nothing for this long is drained and stopped.",
    )
    status = models.CharField(max_length=16, choices=PoolStatus.choices, default=PoolStatus.ACTIVE)
    desired_workers = models.PositiveIntegerField(
        default=0, editable=False, help_text="How many agents its last decision wanted."
    )
    created_at = models.DateTimeField(default=clock.now, editable=False)
    updated_at = models.DateTimeField(default=clock.now, editable=False)
    reconciled_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(min_workers__lte=models.F("max_workers")),
                name="workerpool_min_within_max",
            )
        ]

    def __str__(self) -> str:
        return f"pool {self.worker_type}"

    def clean(self) -> None:
        """The bounds the fields cannot say alone (the API and the admin both call
        full_clean): min within max, and the managed-worker quotas."""
        from workermanager.providers import PROVIDERS

        errors = {}
        if self.provider not in PROVIDERS:
            errors["provider"] = [f"One of {', '.join(PROVIDERS)}."]
        bounds = (self.min_workers, self.max_workers)
        if None not in bounds and bounds[0] > bounds[1]:
            errors["min_workers"] = [f"At most max_workers ({self.max_workers})."]
        quota = settings.HODEI_MAX_MANAGED_WORKERS
        if self.max_workers is not None and self.max_workers > quota:
            errors["max_workers"] = [f"At most {quota} (HODEI_MAX_MANAGED_WORKERS)."]
        limit = settings.HODEI_MAX_MANAGED_CONCURRENCY
        if self.concurrency is not None and self.concurrency > limit:
            errors["concurrency"] = [f"At most {limit} (HODEI_MAX_MANAGED_CONCURRENCY)."]
        if errors:
            raise ValidationError(errors)

    def mark_deleting(self) -> None:
        """active -> deleting: every worker drains and stops, then the row goes."""
        rows = WorkerPool.objects.filter(pk=self.pk, status=PoolStatus.ACTIVE)
        if not rows.update(status=PoolStatus.DELETING, updated_at=clock.now()):
            self.refresh_from_db(fields=["status"])
            if self.status != PoolStatus.DELETING:
                raise InvalidTransition(f"Pool {self.worker_type} is {self.status}.")
        self.status = PoolStatus.DELETING


class PoolScaling(models.Model):
    """One scaling decision of a worker pool: when, from how many live agents to how
    many, and why (history: written by the reconciler, never changed)."""

    id = models.BigAutoField(primary_key=True)
    pool = models.ForeignKey(WorkerPool, on_delete=models.CASCADE, related_name="scalings")
    at = models.DateTimeField(default=clock.now)
    from_workers = models.PositiveIntegerField()
    to_workers = models.PositiveIntegerField()
    reason = models.CharField(max_length=16, choices=ScaleReason.choices)
    detail = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["pool", "-id"], name="poolscaling_pool_idx")]

    def __str__(self) -> str:
        return f"{self.from_workers} -> {self.to_workers} ({self.reason})"


# managed worker target state -> the states it may be reached from
MANAGED_SOURCES = {
    M.RUNNING: {M.STARTING},
    M.FAILED: {M.STARTING, M.RUNNING},
    M.STOPPING: {M.STARTING, M.RUNNING},
    M.STOPPED: {M.STARTING, M.RUNNING, M.STOPPING},
}


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
        max_length=16, choices=ManagedWorkerStatus.choices, default=M.STARTING
    )
    pid = models.PositiveIntegerField(null=True, blank=True)
    host = models.CharField(max_length=255, blank=True, default="")
    worker = models.ForeignKey(
        Worker,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="managed_by",
        help_text="The Worker row the agent registered as.",
    )
    failure_reason = models.TextField(blank=True, default="")
    pool = models.ForeignKey(
        WorkerPool,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="workers",
        help_text="The pool that started it, if any.",
    )
    created_at = models.DateTimeField(default=clock.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "-id"], name="managedworker_status_idx")]

    def __str__(self) -> str:
        return self.name

    def mark_running(self, *, worker: Worker, now: datetime) -> None:
        self._move(M.RUNNING, worker=worker, started_at=now)

    def mark_failed(self, *, reason: str, now: datetime) -> None:
        self._move(M.FAILED, failure_reason=reason[:2000], stopped_at=now)

    def mark_stopping(self) -> None:
        self._move(M.STOPPING)

    def mark_stopped(self, *, now: datetime) -> None:
        self._move(M.STOPPED, stopped_at=now)

    def _move(self, target: str, **fields) -> None:
        """A conditional UPDATE, as for executions: of a reconciler and a stop racing for
        the same row, one wins and the other is told."""
        rows = ManagedWorker.objects.filter(pk=self.pk, status__in=MANAGED_SOURCES[target])
        if not rows.update(status=target, **fields):
            self.refresh_from_db()
            raise InvalidTransition(f"Managed worker is {self.status}; cannot become {target}.")
        self.status = target
        for name, value in fields.items():
            setattr(self, name, value)


_limited_seen = {"value": True, "at": -1e9}
LIMITED_CHECK_SECONDS = 1.0


def _limited_jobs_exist() -> bool:
    """Whether some job has a concurrency limit, looked at most once a second. A stale
    answer is safe: the one-statement claim leaves limited jobs out by itself, so at
    worst their executions wait a second for the claim that honours limits."""
    now = time.monotonic()
    if now - _limited_seen["at"] >= LIMITED_CHECK_SECONDS:
        _limited_seen["value"] = Job.objects.filter(concurrency_limit__isnull=False).exists()
        _limited_seen["at"] = now
    return _limited_seen["value"]


class Execution(ResourceLimits):
    """One attempt at running a command. A retry is a new Execution (``attempt`` + 1,
    ``retry_of`` the previous one), so every attempt keeps its own log.

    Transitions are conditional UPDATEs (``WHERE status IN SOURCES[target]``, see
    choices.py) whose row count is checked, so two racing reporters (a worker and the
    reaper, an API cancel and a finishing worker) can never both win, and a late report
    changes nothing. Only ``workermanager.services`` calls them: it applies the side
    effects of every transition in one place."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # No index of their own on job, worker and pipeline_run: execution_job_idx,
    # execution_worker_idx and execution_run_job_idx lead with them (every lookup by one
    # of them, a cascade's included, uses those), and every index is one more insert
    # for each queued, claimed and settled execution.
    job = models.ForeignKey(
        "orchestrator.Job",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="executions",
        db_index=False,
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
        Worker,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="executions",
        db_index=False,
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
    pipeline_run = models.ForeignKey(
        "pipelines.PipelineRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="executions",
        help_text="The pipeline run it is a job of.",
        db_index=False,
    )
    outputs = models.JSONField(
        default=dict,
        blank=True,
        help_text="KEY=value lines its command wrote to $HODEI_OUTPUT, for the jobs after it.",
    )
    own_command = models.BooleanField(
        default=False,
        help_text="Its command was written by whoever queued it (ad hoc, or overriding the "
        "job's), not the job's own.",
    )
    with_secrets = models.BooleanField(
        default=True, help_text="It receives its job's secret variables."
    )
    priority = models.SmallIntegerField(
        default=0, help_text="Its job's priority when queued: higher is claimed first."
    )

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("run_job", "Can run jobs: execute, retry, run now, schedules, pipeline runs"),
            ("run_command", "Can run commands of their own (ad hoc, or a job's overridden)"),
        ]
        constraints = [
            # A schedule slot yields at most one execution, however many schedulers fire.
            models.UniqueConstraint(
                fields=["schedule", "scheduled_for"],
                condition=models.Q(schedule__isnull=False, scheduled_for__isnull=False),
                name="execution_one_per_schedule_slot",
            ),
        ]
        indexes = [
            # The claim query: highest priority first, then oldest, per worker type.
            models.Index(
                models.F("priority").desc(),
                "id",
                condition=models.Q(status="queued"),
                name="execution_queue_idx",
            ),
            # Whether a pipeline run's job is queued, at a glance (the one-statement
            # claim leaves those to the claim that runs the runs' hooks).
            models.Index(
                fields=["id"],
                condition=models.Q(status="queued", pipeline_run__isnull=False),
                name="execution_queued_run_idx",
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
            models.Index(
                fields=["pipeline_run", "job", "-id"],
                condition=models.Q(pipeline_run__isnull=False),
                name="execution_run_job_idx",
            ),
        ]

    def __str__(self) -> str:
        return str(self.id)

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)

    # -- transitions (called by workermanager.services only) ----------------------

    @classmethod
    def claims_in_one_statement(cls) -> bool:
        """Whether a claim now is its one statement (see ``claim``)."""
        return connection.vendor == "postgresql" and not _limited_jobs_exist()

    @classmethod
    def claim(
        cls,
        *,
        worker: Worker,
        limit: int,
        now: datetime,
        only_online: bool = False,
    ) -> list["Execution"]:
        """queued -> running for up to ``limit`` executions that ``worker`` may run
        (its type, or any type): highest priority first, oldest first within a
        priority, never more running executions of a job than its concurrency limit.
        With ``only_online``, nothing unless the worker is online, and its row stays
        locked (FOR NO KEY UPDATE) until the claim commits: a go_offline or reaper
        that changes its status waits, then sees what was claimed.

        On PostgreSQL, while no job has a limit, one statement: UPDATE ... WHERE id IN
        (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING, with the worker's lock in the
        same statement. Concurrent claimers lock disjoint rows and never wait on each
        other, so no execution is claimed twice. That statement leaves out jobs with a
        limit (read in the same statement, so always current); when such jobs exist,
        the claim locks their rows first (in id order), counts what runs, and takes only
        what fits. On SQLite the IMMEDIATE transaction serialises claimers instead."""
        if cls.claims_in_one_statement():
            return cls._claim_in_one_statement(
                worker=worker, limit=limit, now=now, only_online=only_online
            )
        with transaction.atomic():
            if only_online and not Worker.objects.select_for_update(no_key=True).filter(
                pk=worker.pk, status=WorkerStatus.ONLINE
            ).values_list("pk", flat=True):
                return []
            rows = cls._claim_within_limits(worker=worker, limit=limit, now=now)
            # Started once the jobs' locks are held, not when the claim began: a run of a
            # limited job that settled while this claim waited for its lock ended before
            # this one starts, in the rows as in fact.
            started = max(now, clock.now())
            for row in rows:
                row._transition(S.RUNNING, **cls._start_fields(row, worker=worker, now=started))
        return rows

    @classmethod
    def _claim_within_limits(cls, *, worker, limit, now) -> list["Execution"]:
        queued = cls.objects.filter(status=S.QUEUED, available_at__lte=now).filter(
            models.Q(worker_type="") | models.Q(worker_type=worker.type)
        )
        # Locked, in id order (no deadlock between claimers): a claimer counting a job's
        # running executions holds the job until it commits what it took.
        limits = dict(
            Job.objects.select_for_update()
            .filter(concurrency_limit__isnull=False, pk__in=queued.values("job_id"))
            .order_by("pk")
            .values_list("pk", "concurrency_limit")
        )
        running = dict(
            cls.objects.filter(status=S.RUNNING, job_id__in=list(limits))
            .values_list("job_id")
            .annotate(n=models.Count("id"))
            .order_by()
        )
        room = {job: limit_ - running.get(job, 0) for job, limit_ in limits.items()}
        full = [job for job, n in room.items() if n <= 0]
        # A limited job whose first execution was queued after the locking statement
        # above is not locked nor counted: left to the next claim, never taken unchecked.
        unlocked = Job.objects.filter(concurrency_limit__isnull=False).exclude(pk__in=list(limits))
        candidates = (
            queued.exclude(job_id__in=full)
            .exclude(job_id__in=unlocked.values("pk"))
            .select_for_update(skip_locked=True)
            .order_by("-priority", "id")[: limit * 4]
        )
        picked = []
        for row in candidates:
            if row.job_id in room:
                if room[row.job_id] <= 0:
                    continue
                room[row.job_id] -= 1
            picked.append(row)
            if len(picked) == limit:
                break
        return picked

    @staticmethod
    def _start_fields(row: "Execution", *, worker: Worker, now: datetime) -> dict:
        deadline = now + timedelta(seconds=row.timeout_seconds) if row.timeout_seconds else None
        return {"worker": worker, "started_at": now, "deadline_at": deadline}

    @classmethod
    def _claim_in_one_statement(cls, *, worker, limit, now, only_online) -> list["Execution"]:
        sql, params = cls.claim_statement(
            worker=worker, limit=limit, now=now, only_online=only_online
        )
        claimed = cls._from_returning(f"{sql} RETURNING {select_list(cls)}", params)
        claimed.sort(key=lambda e: e.id)
        return claimed

    @classmethod
    def claim_statement(
        cls, *, worker, limit, now, only_online, unless: str = ""
    ) -> tuple[str, list]:
        """The one-statement claim's UPDATE (without RETURNING) and its parameters.
        ``unless``: an SQL condition that, when true, makes it claim nothing."""
        table = cls._meta.db_table
        # The worker's lock, when asked, is a one-time filter of the same statement: one
        # round trip instead of two.
        online = ""
        params = [S.RUNNING, worker.pk, now, now]
        if only_online:
            online = f"""AND EXISTS (SELECT 1 FROM {Worker._meta.db_table}
                WHERE id = %s AND status = %s FOR NO KEY UPDATE)"""
            params += [worker.pk, WorkerStatus.ONLINE]
        sql = f"""
            UPDATE {table} SET status = %s, worker_id = %s, started_at = %s,
                deadline_at = %s + timeout_seconds * interval '1 second'
            WHERE id IN (
                SELECT id FROM {table}
                WHERE status = %s AND available_at <= %s AND worker_type IN ('', %s)
                    AND (job_id IS NULL OR job_id NOT IN (
                        SELECT id FROM {Job._meta.db_table}
                        WHERE concurrency_limit IS NOT NULL))
                    {online} {f"AND NOT ({unless})" if unless else ""}
                ORDER BY priority DESC, id LIMIT %s
                FOR UPDATE SKIP LOCKED)"""
        return sql, [*params[:4], S.QUEUED, now, worker.type, *params[4:], limit]

    @classmethod
    def _from_returning(cls, sql: str, params: list) -> list["Execution"]:
        """Run a raw statement that returns whole rows (``select_list``), as instances."""
        return from_rows(cls, fetch_all(sql, params))

    @classmethod
    def settle_many(
        cls, *, worker: Worker, reports: list[dict], now: datetime
    ) -> list["Execution"]:
        """running -> how each run ended, for runs that ``worker`` holds, as its agent
        reports them together (every run that ended in one turn of its loop). Each
        report is ``settle``'s keywords plus ``execution_id``. Returns the executions
        this call moved, in their new state; a report on one settled meanwhile (a late
        report) changes nothing, as with ``settle``.

        On PostgreSQL one conditional UPDATE ... FROM (VALUES ...) RETURNING for all of
        them (WHERE status = 'running' AND worker_id = the worker: SOURCES of every
        worker outcome), instead of a read and an UPDATE each."""
        for report in reports:
            if report["status"] not in WORKER_OUTCOMES:
                raise ValueError(f"{report['status']!r} is not how a run ends")
        if connection.vendor != "postgresql":
            moved = []
            for report in reports:
                fields = {k: v for k, v in report.items() if k != "execution_id"}
                row = cls.objects.filter(pk=report["execution_id"]).first()
                if row is not None and row.settle(worker=worker, now=now, **fields):
                    moved.append(row)
            return moved
        values, values_params = cls.settle_values(reports)
        update, params = cls.settle_statement(
            worker=worker, source=f"({values})", source_params=values_params, now=now
        )
        return cls._from_returning(f"{update} RETURNING {select_list(cls, 'e')}", params)

    # What a report of a run's end sets, as settle_values lists it.
    SETTLE_COLUMNS = "id, status, exit_code, error, log_bytes, log_truncated, outputs"

    @classmethod
    def settle_values(cls, reports: list[dict]) -> tuple[str, list]:
        """``reports`` as a VALUES list of SETTLE_COLUMNS, and its parameters."""
        values, params = [], []
        for report in reports:
            values.append("(%s::uuid, %s, %s::integer, %s, %s::bigint, %s::boolean, %s::jsonb)")
            outputs = report.get("outputs")
            params += [
                str(report["execution_id"]),
                report["status"],
                report.get("exit_code"),
                (report.get("error") or "")[:2000],
                report.get("log_bytes"),
                report.get("log_truncated"),
                json.dumps(outputs) if outputs else None,
            ]
        return f"VALUES {', '.join(values)}", params

    @classmethod
    def settle_statement(
        cls,
        *,
        worker: Worker,
        source: str,
        now: datetime,
        source_params: list = (),
        unless: str = "",
    ) -> tuple[str, list]:
        """``settle_many``'s UPDATE (without RETURNING) of the reports in ``source`` (a
        parenthesised VALUES list with its ``source_params``, or a WITH clause, as
        SETTLE_COLUMNS), and its parameters. ``unless``: an SQL condition that, when
        true, makes it settle nothing."""
        table = cls._meta.db_table
        guard = f" AND NOT ({unless})" if unless else ""
        sql = f"""
            UPDATE {table} AS e SET status = v.status, exit_code = v.exit_code,
                error = CASE WHEN v.status = %s AND v.error = ''
                    THEN 'Timed out after ' || coalesce(e.timeout_seconds::text, 'None') || ' s.'
                    ELSE v.error END,
                finished_at = %s,
                log_bytes = coalesce(v.log_bytes, e.log_bytes),
                log_truncated = coalesce(v.log_truncated, e.log_truncated),
                outputs = coalesce(v.outputs, e.outputs)
            FROM {source} AS v({cls.SETTLE_COLUMNS})
            WHERE e.id = v.id AND e.status = %s AND e.worker_id = %s{guard}"""
        return sql, [S.TIMED_OUT, now, *source_params, S.RUNNING, worker.pk]

    def settle(
        self,
        *,
        status: str,
        now: datetime,
        worker: Worker | None = None,
        exit_code: int | None = None,
        error: str = "",
        log_bytes: int | None = None,
        log_truncated: bool | None = None,
        outputs: dict[str, str] | None = None,
    ) -> bool:
        """running -> how it ended (one of WORKER_OUTCOMES). With ``worker``, only if that
        worker holds it. Returns False, changing nothing, when the execution was settled
        meanwhile (a late report from a lost worker)."""
        if status not in WORKER_OUTCOMES:
            raise ValueError(f"{status!r} is not how a run ends")
        if status == S.TIMED_OUT and not error:
            error = f"Timed out after {self.timeout_seconds} s."
        fields = {"exit_code": exit_code, "error": error[:2000], "finished_at": now}
        if log_bytes is not None:
            fields["log_bytes"] = log_bytes
        if log_truncated is not None:
            fields["log_truncated"] = log_truncated
        if outputs:
            fields["outputs"] = outputs
        by_worker = {"worker": worker} if worker is not None else {}
        return self._transition(status, only_if=by_worker, **fields)

    def lose(self, *, now: datetime, reason: str) -> bool:
        """running -> lost: its worker stopped heartbeating."""
        return self._transition(S.LOST, error=reason[:2000], finished_at=now)

    def release(self, *, env: dict) -> bool:
        """pending -> queued: its upstream jobs are done (``env``: with their outputs)."""
        return self._transition(S.QUEUED, available_at=clock.now(), env=env)

    @classmethod
    def release_many(cls, executions: list["Execution"], *, now: datetime) -> list["Execution"]:
        """``release`` (without added variables) for many pending executions at once: one
        UPDATE. Returns those it moved (a cancel may have taken some first), updated."""
        by_id = {e.pk: e for e in executions}
        # Locked, then moved: the rows this call moves are exactly these.
        ids = list(
            cls.objects.select_for_update()
            .filter(pk__in=list(by_id), status__in=SOURCES[S.QUEUED])
            .values_list("pk", flat=True)
        )
        cls.objects.filter(pk__in=ids).update(status=S.QUEUED, available_at=now)
        for pk in ids:
            by_id[pk].status, by_id[pk].available_at = S.QUEUED, now
        return [by_id[pk] for pk in ids]

    def succeed_without_worker(self, *, now: datetime) -> bool:
        """queued -> succeeded for an empty command (a no-op build, as in Jenkins): done
        at once, no worker needed."""
        if not self._transition(S.RUNNING, worker=None, started_at=now):
            return False
        return self.settle(status=S.SUCCEEDED, exit_code=0, now=now)

    def skip(self, *, now: datetime, reason: str) -> bool:
        """pending -> skipped: an upstream job failed."""
        return self._transition(S.SKIPPED, error=reason[:2000], finished_at=now)

    def expire(self, *, now: datetime, reason: str) -> bool:
        """queued -> expired: no worker took it in time."""
        return self._transition(S.EXPIRED, error=reason[:2000], finished_at=now)

    def cancel(self, *, now: datetime) -> bool:
        """Cancel: one that has not started ends at once (True); a running one is flagged
        and its worker kills it within a second (False). Refused (409) once it has
        finished."""
        if self._transition(
            S.CANCELLED,
            only_if={"status__in": {S.PENDING, S.QUEUED}},
            cancel_requested=True,
            finished_at=now,
        ):
            return True
        if self.status == S.RUNNING:
            if Execution.objects.filter(pk=self.pk, status=S.RUNNING).update(cancel_requested=True):
                self.cancel_requested = True
                return False
            self.refresh_from_db()
        raise InvalidTransition(f"Execution is already {self.status}; it cannot be cancelled.")

    def _transition(self, target: str, *, only_if: dict | None = None, **fields) -> bool:
        """Move to ``target`` if the row is still in one of its SOURCES; returns whether
        this call made the move. The in-memory object is refreshed either way."""
        rows = Execution.objects.filter(pk=self.pk, status__in=SOURCES[target])
        if only_if:
            rows = rows.filter(**only_if)
        changed = rows.update(status=target, **fields) == 1
        if changed:
            self.status = target
            for name, value in fields.items():
                setattr(self, name, value)
        else:
            self.refresh_from_db()
        return changed


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
