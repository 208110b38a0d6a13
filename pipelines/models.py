from datetime import datetime

from django.db import models

from hodei.exceptions import InvalidTransition
from hodei.lib import clock
from hodei.lib.ids import uuid7
from pipelines.choices import ACTIVE_RUN, FINISHED_RUN, RETRYABLE_RUN, RunStatus, RunTrigger

R = RunStatus


class PipelineRun(models.Model):
    """One run of a pipeline's jobs as a DAG over their dependencies. Each job of the run
    is an Execution (``pipeline_run``): created ``pending`` (or ``queued`` when it needs
    nothing) at the start, queued when every job it needs has succeeded, skipped when one
    failed. The graph is a copy of the jobs' dependencies as they were at the start, so
    editing the pipeline never changes a run under way."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    pipeline = models.ForeignKey(
        "orchestrator.Pipeline", on_delete=models.CASCADE, related_name="runs"
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=R.QUEUED)
    trigger = models.CharField(max_length=16, choices=RunTrigger.choices, default=RunTrigger.API)
    env = models.JSONField(
        default=dict, blank=True, help_text="Parameters: variables every job of it receives."
    )
    graph = models.JSONField(
        default=dict, help_text="job id -> ids of the jobs it needs, at the start of the run."
    )
    allow_failure = models.JSONField(
        default=list, blank=True, help_text="Ids of its jobs that may fail without failing it."
    )
    schedule = models.ForeignKey(
        "scheduler.Schedule",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="pipeline_runs",
    )
    scheduled_for = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=clock.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    trace_id = models.CharField(max_length=32, blank=True, default="")
    trace_parent = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-id"]
        constraints = [
            # A schedule slot starts at most one run, however many schedulers fire.
            models.UniqueConstraint(
                fields=["schedule", "scheduled_for"],
                condition=models.Q(schedule__isnull=False, scheduled_for__isnull=False),
                name="pipelinerun_one_per_schedule_slot",
            ),
        ]
        indexes = [
            models.Index(fields=["pipeline", "-id"], name="pipelinerun_pipeline_idx"),
            models.Index(fields=["status", "-id"], name="pipelinerun_status_idx"),
            models.Index(fields=["trigger", "-id"], name="pipelinerun_trigger_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.pipeline} run {str(self.id)[:13]}"

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)

    # -- transitions (callers hold the run's row lock) --------------------------------

    def start(self, *, now: datetime) -> bool:
        """queued -> running: its first job started."""
        if self.status != R.QUEUED:
            return False
        self._set(status=R.RUNNING, started_at=now)
        return True

    def finish(self, *, status: str, now: datetime) -> None:
        """active -> how it ended: nothing is left to run."""
        if status not in FINISHED_RUN:
            raise ValueError(f"{status!r} is not how a run ends")
        if self.status not in ACTIVE_RUN:
            raise InvalidTransition(f"The run is already {self.status}.")
        self._set(status=status, finished_at=now, started_at=self.started_at or now)

    def cancel(self, *, now: datetime) -> None:
        if self.status not in ACTIVE_RUN:
            raise InvalidTransition(
                f"The run is {self.status}; only an active run can be cancelled."
            )
        self._set(status=R.CANCELLED, cancel_requested=True, finished_at=now)

    def request_cancel(self) -> None:
        """From now on no advance releases anything of it (its cancel is under way)."""
        if self.status not in ACTIVE_RUN:
            raise InvalidTransition(f"The run is already {self.status}; it cannot be cancelled.")
        if not self.cancel_requested:
            self._set(cancel_requested=True)

    def reopen(self) -> None:
        """failed or cancelled -> running again (a retry of its failed jobs)."""
        if self.status not in RETRYABLE_RUN:
            raise InvalidTransition(
                f"The run is {self.status}; only a failed or cancelled run can be retried."
            )
        self._set(status=R.RUNNING, finished_at=None, cancel_requested=False)

    def _set(self, **fields) -> None:
        for name, value in fields.items():
            setattr(self, name, value)
        self.save(update_fields=list(fields))
