from django.db import models


class ExecutionStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LOST = "lost"


ACTIVE = frozenset({ExecutionStatus.QUEUED, ExecutionStatus.RUNNING})
TERMINAL = frozenset(
    {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMED_OUT,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.LOST,
    }
)
# Outcomes that the job's retry policy retries automatically.
RETRYABLE = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT})


class Trigger(models.TextChoices):
    API = "api"
    SCHEDULE = "schedule"
    RETRY = "retry"
    ADMIN = "admin"
    CLI = "cli"


class LogStream(models.TextChoices):
    STDOUT = "stdout"
    STDERR = "stderr"
    SYSTEM = "system"


class ManagedWorkerStatus(models.TextChoices):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


MANAGED_LIVE = frozenset(
    {ManagedWorkerStatus.STARTING, ManagedWorkerStatus.RUNNING, ManagedWorkerStatus.STOPPING}
)
