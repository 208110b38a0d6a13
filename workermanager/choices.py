"""Statuses of executions, workers and managed workers, and the moves between them.

An execution's state machine is the table ``SOURCES`` below: a new state or a new move is
an edit here (and, for a move a worker reports, in ``WORKER_OUTCOMES``)."""

from django.db import models


class ExecutionStatus(models.TextChoices):
    PENDING = "pending"  # waiting for its upstream jobs in a pipeline run
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LOST = "lost"  # its worker stopped heartbeating
    SKIPPED = "skipped"  # an upstream job of its pipeline run failed
    EXPIRED = "expired"  # no worker took it in time


S = ExecutionStatus

# target state -> the states it may be reached from. Every transition is a conditional
# UPDATE ... WHERE status IN SOURCES[target]: of two racing reporters, one wins.
SOURCES: dict[str, frozenset] = {
    S.QUEUED: frozenset({S.PENDING}),
    S.RUNNING: frozenset({S.QUEUED}),
    S.SUCCEEDED: frozenset({S.RUNNING}),
    S.FAILED: frozenset({S.RUNNING}),
    S.TIMED_OUT: frozenset({S.RUNNING}),
    S.CANCELLED: frozenset({S.PENDING, S.QUEUED, S.RUNNING}),
    S.LOST: frozenset({S.RUNNING}),
    S.SKIPPED: frozenset({S.PENDING}),
    S.EXPIRED: frozenset({S.QUEUED}),
}

WAITING = frozenset({S.PENDING, S.QUEUED})
ACTIVE = frozenset({S.PENDING, S.QUEUED, S.RUNNING})
TERMINAL = frozenset(ExecutionStatus) - ACTIVE
# What a worker may report about an execution it ran.
WORKER_OUTCOMES = frozenset({S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED})
RUN_OUTCOME_CHOICES = sorted(WORKER_OUTCOMES)  # as the agent API lists them
# Outcomes that the job's retry policy retries automatically.
RETRYABLE = frozenset({S.FAILED, S.TIMED_OUT})


class Trigger(models.TextChoices):
    API = "api", "API"
    SCHEDULE = "schedule"
    RETRY = "retry"
    ADMIN = "admin"
    CLI = "cli", "CLI"
    PIPELINE = "pipeline"


class LogStream(models.TextChoices):
    STDOUT = "stdout"
    STDERR = "stderr"
    SYSTEM = "system"


class WorkerStatus(models.TextChoices):
    ONLINE = "online"
    DRAINING = "draining"
    OFFLINE = "offline"


class Isolation(models.TextChoices):
    """How an agent runs commands: each in a sandbox (bubblewrap), or as plain processes
    of the agent's own user (explicit, and flagged wherever workers are shown)."""

    SANDBOX = "sandbox"
    NONE = "none"


LIVE_WORKER_STATUSES = frozenset({WorkerStatus.ONLINE, WorkerStatus.DRAINING})


class ManagedWorkerStatus(models.TextChoices):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


MANAGED_LIVE = frozenset(
    {ManagedWorkerStatus.STARTING, ManagedWorkerStatus.RUNNING, ManagedWorkerStatus.STOPPING}
)


class PoolStatus(models.TextChoices):
    ACTIVE = "active"
    DELETING = "deleting"  # its workers drain and stop; then the pool is gone


class ScaleReason(models.TextChoices):
    """Why a worker pool changed its number of workers (a PoolScaling's ``reason``)."""

    MIN = "min"  # below min_workers
    QUEUE = "queue"  # queued executions of its type exceed its free capacity
    WAIT = "wait"  # the oldest queued execution waited longer than scale_up_after_seconds
    REPLACE = "replace"  # workers died (a process killed, a pod evicted): replaced
    IDLE = "idle"  # workers idle for idle_seconds: drained and stopped
    MAX = "max"  # above max_workers (lowered): drained and stopped
    DELETED = "deleted"  # the pool was deleted: every worker drains and stops
