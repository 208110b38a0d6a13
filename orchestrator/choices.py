from django.db import models


class PipelineStatus(models.TextChoices):
    ACTIVE = "active"
    PAUSED = "paused"
    ARCHIVED = "archived"


class JobStatus(models.TextChoices):
    """A job's status is the status of its latest execution, or ``pending`` before one."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LOST = "lost"


class Network(models.TextChoices):
    """What network a command sees: the host's (the default), or none at all."""

    DEFAULT = "default"
    NONE = "none"


class CommandType(models.TextChoices):
    """How a command runs: ``bash -c``, ``sh -c`` or ``python3 -c``."""

    BASH = "bash"
    SH = "sh"
    PYTHON = "python"
