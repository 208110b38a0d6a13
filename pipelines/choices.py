from django.db import models


class RunStatus(models.TextChoices):
    QUEUED = "queued"  # its jobs are queued or pending; none has started yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_RUN = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
FINISHED_RUN = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
# A finished run that can be retried ("retry failed jobs").
RETRYABLE_RUN = frozenset({RunStatus.FAILED, RunStatus.CANCELLED})


class RunTrigger(models.TextChoices):
    API = "api", "API"
    SCHEDULE = "schedule"
    ADMIN = "admin"
    CLI = "cli", "CLI"
    RETRY = "retry"


class JobState(models.TextChoices):
    """A job's state in a run: its latest attempt's, in the run's words."""

    PENDING = "pending"  # waiting for the jobs it needs
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # failed, timed out, lost or expired, with no retry left
    SKIPPED = "skipped"  # a job it needs failed
    CANCELLED = "cancelled"


# An execution's status -> the state of its job in the run.
JOB_STATE_OF = {
    "pending": JobState.PENDING,
    "queued": JobState.QUEUED,
    "running": JobState.RUNNING,
    "succeeded": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "timed_out": JobState.FAILED,
    "lost": JobState.FAILED,
    "expired": JobState.FAILED,
    "skipped": JobState.SKIPPED,
    "cancelled": JobState.CANCELLED,
}
ACTIVE_JOB = frozenset({JobState.PENDING, JobState.QUEUED, JobState.RUNNING})
# Re-run by a retry of the run ("retry failed jobs", as in GitLab).
RETRIED_JOB = frozenset({JobState.FAILED, JobState.SKIPPED, JobState.CANCELLED})
