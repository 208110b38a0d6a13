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


class FireOutcome(models.TextChoices):
    """What became of one schedule slot."""

    FIRED = "fired"  # an execution (or a pipeline run) was queued for it
    SKIPPED_OVERLAP = "skipped_overlap"  # forbid: the previous run was still active
    SKIPPED_PAUSED = "skipped_paused"  # its pipeline is paused (or archived)
    REPLACED = "replaced"  # replace: the previous run was cancelled for this one
    MISSED = "missed"  # the scheduler was down at the time; misfire policy skip
    CAUGHT_UP = "caught_up"  # missed slots covered by one run_once catch-up execution


class ScheduleHealth(models.TextChoices):
    """Dead-man alerting (a schedule with alert_after_seconds): did its last slot whose
    grace has passed succeed in time?"""

    UNKNOWN = "unknown"  # no alerting, or no slot's grace has passed yet
    UP = "up"
    DOWN = "down"
