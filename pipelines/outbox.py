"""Pipeline run events (docs/events.md), written in the transaction of the change."""

from events.services import event_emit
from hodei.lib import clock
from pipelines.models import PipelineRun


def run_event(run: PipelineRun, kind: str) -> None:
    event_emit(
        f"pipeline_run.{kind}",
        subject=("pipeline_run", run.pk),
        ids={
            "pipeline_run_id": run.pk,
            "pipeline_id": run.pipeline_id,
            "schedule_id": run.schedule_id,
        },
        payload={
            "status": run.status,
            "trigger": run.trigger,
            "scheduled_for": clock.iso(run.scheduled_for),
            "created_at": clock.iso(run.created_at),
            "started_at": clock.iso(run.started_at),
            "finished_at": clock.iso(run.finished_at),
            "duration_ms": run.duration_ms,
        },
    )
