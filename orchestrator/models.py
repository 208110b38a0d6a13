from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from hodei.lib import clock
from hodei.lib.ids import uuid7
from hodei.lib.validators import plain_text
from orchestrator.choices import CommandType, JobStatus, Network, PipelineStatus

MAX_TIMEOUT_SECONDS = 7 * 24 * 3600

# What a user sets on a pipeline and on a job, declared once: the services accept these,
# the API's serializers and the admin's forms list them from here.
PIPELINE_SETTINGS = ("name", "description", "status", "metadata")
JOB_SETTINGS = (
    "name",
    "description",
    "command",
    "type",
    "worker_type",
    "labels",
    "env",
    "secret_env",
    "timeout_seconds",
    "max_retries",
    "retry_delay_seconds",
    "retry_backoff",
    "max_lost_retries",
    "retention_days",
    "retention_count",
    "allow_failure",
    "priority",
    "concurrency_limit",
    "network",
    "memory_limit_mb",
    "pids_limit",
    "cpu_limit",
)
# A job's settings an execution takes a copy of when it is queued (its run settings).
RUN_SETTINGS = (
    "command",
    "type",
    "worker_type",
    "priority",
    "timeout_seconds",
    "network",
    "memory_limit_mb",
    "pids_limit",
    "cpu_limit",
)


class ResourceLimits(models.Model):
    """What a command may use, enforced by the agent's sandbox (agent.sandbox): cgroups
    where it can create them, rlimits otherwise. Empty means no limit."""

    network = models.CharField(
        max_length=16,
        choices=Network.choices,
        default=Network.DEFAULT,
        help_text="none: the command has no network at all (its own loopback only).",
    )
    memory_limit_mb = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(16), MaxValueValidator(1024 * 1024)],
        help_text="Memory in MiB; a command over it is killed and its execution fails.",
    )
    pids_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(8), MaxValueValidator(100_000)],
        help_text="Processes and threads at once.",
    )
    cpu_limit = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.01), MaxValueValidator(1024)],
        help_text="CPU cores (0.5 is half a core).",
    )

    class Meta:
        abstract = True


worker_type_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
    "Use letters, digits, '.', '_' and '-', starting with a letter or digit.",
)


class Pipeline(models.Model):
    """A named group of jobs that belong together, such as the build of one project."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    name = models.CharField(max_length=200, validators=[plain_text])
    description = models.TextField(blank=True, default="")
    status = models.CharField(
        max_length=16, choices=PipelineStatus.choices, default=PipelineStatus.ACTIVE
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=clock.now, editable=False)
    updated_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "-id"], name="pipeline_status_idx")]

    def __str__(self) -> str:
        return self.name


class Job(ResourceLimits):
    """A command to run and how to run it. Its fields are the defaults of every execution
    started from it; a run may override them."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="jobs")
    name = models.CharField(max_length=200, blank=True, default="", validators=[plain_text])
    description = models.TextField(blank=True, default="")
    command = models.TextField(blank=True, default="")
    type = models.CharField(max_length=16, choices=CommandType.choices, default=CommandType.BASH)
    worker_type = models.CharField(
        max_length=64,
        blank=True,
        default="",
        validators=[worker_type_validator],
        help_text="Only workers of this type may run it; empty means any worker.",
    )
    labels = models.JSONField(default=dict, blank=True)
    env = models.JSONField(default=dict, blank=True)
    secret_env = models.JSONField(
        default=dict,
        blank=True,
        help_text="Environment variables whose values are never shown in the API or logs; "
        "stored encrypted (hodei/lib/secrets.py), decrypted only for the agent that runs it.",
    )
    timeout_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_TIMEOUT_SECONDS)],
        help_text="Empty means no timeout.",
    )
    max_retries = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(100)],
        help_text="Automatic retries after a failed or timed-out run.",
    )
    retry_delay_seconds = models.PositiveIntegerField(
        default=10, validators=[MaxValueValidator(24 * 3600)]
    )
    retry_backoff = models.FloatField(
        default=2.0,
        validators=[MinValueValidator(1.0), MaxValueValidator(10.0)],
        help_text="Each retry waits this many times longer than the one before.",
    )
    max_lost_retries = models.PositiveSmallIntegerField(
        default=1,
        validators=[MaxValueValidator(100)],
        help_text="Retries after a run was lost with its worker (an infrastructure failure).",
    )
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Delete finished executions older than this; empty uses the global setting.",
    )
    retention_count = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(1_000_000)],
        help_text="Keep at most this many finished executions; empty means no count limit.",
    )
    depends_on = models.ManyToManyField(
        "self", symmetrical=False, blank=True, related_name="dependents"
    )
    allow_failure = models.BooleanField(
        default=False,
        help_text="In a pipeline run, its failure neither fails the run nor skips the jobs "
        "that depend on it.",
    )
    priority = models.SmallIntegerField(
        default=0,
        validators=[MinValueValidator(-100), MaxValueValidator(100)],
        help_text="Higher runs first among queued executions of its worker type (first in, "
        "first out within a priority); -100 to 100.",
    )
    concurrency_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(10_000)],
        help_text="At most this many of its executions run at once, across all workers; "
        "empty means no limit.",
    )
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    created_at = models.DateTimeField(default=clock.now, editable=False)
    updated_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The claim asks whether any job has a limit: answered from this small index.
            models.Index(
                fields=["id"],
                condition=models.Q(concurrency_limit__isnull=False),
                name="job_limited_idx",
            ),
            models.Index(fields=["pipeline", "-id"], name="job_pipeline_idx"),
            models.Index(fields=["status", "-id"], name="job_status_idx"),
            models.Index(fields=["type", "-id"], name="job_type_idx"),
        ]

    def __str__(self) -> str:
        return self.name or str(self.id)
