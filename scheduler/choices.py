from django.db import models


class ScheduleStatus(models.TextChoices):
    SCHEDULED = "scheduled"
    PAUSED = "paused"
    COMPLETED = "completed"


class OverlapPolicy(models.TextChoices):
    ALLOW = "allow"
    FORBID = "forbid"
    REPLACE = "replace"


class MisfirePolicy(models.TextChoices):
    SKIP = "skip"
    RUN_ONCE = "run_once"


class WorkerStatus(models.TextChoices):
    ONLINE = "online"
    DRAINING = "draining"
    OFFLINE = "offline"


LIVE_WORKER_STATUSES = frozenset({WorkerStatus.ONLINE, WorkerStatus.DRAINING})
