"""Schedule events (docs/events.md), written in the transaction of the change."""

from events.services import event_emit, event_new, events_emit
from hodei.lib import clock
from scheduler.choices import FireOutcome
from scheduler.models import Schedule, ScheduleFire

FIRE_EVENT = {
    FireOutcome.FIRED: "schedule.fired",
    FireOutcome.REPLACED: "schedule.fired",
    FireOutcome.SKIPPED_OVERLAP: "schedule.skipped",
    FireOutcome.SKIPPED_PAUSED: "schedule.skipped",
    FireOutcome.MISSED: "schedule.missed",
    FireOutcome.CAUGHT_UP: "schedule.missed",
}


def _ids(schedule: Schedule, **more) -> dict:
    return {
        "schedule_id": schedule.pk,
        "job_id": schedule.job_id,
        "pipeline_id": schedule.pipeline_id,
        **more,
    }


def fire_event(schedule: Schedule, fire: ScheduleFire) -> None:
    # events_emit: one plain INSERT (a burst of firings writes a hundred of these).
    events_emit(
        [
            event_new(
                FIRE_EVENT[fire.outcome],
                subject=("schedule", schedule.pk),
                ids=_ids(
                    schedule, execution_id=fire.execution_id, pipeline_run_id=fire.pipeline_run_id
                ),
                payload={
                    "name": str(schedule),
                    "outcome": fire.outcome,
                    "slot_at": clock.iso(fire.slot_at),
                    "fired_at": clock.iso(fire.fired_at),
                    "is_manual": fire.is_manual,
                    "detail": fire.detail,
                },
            )
        ]
    )


def health_event(schedule: Schedule, kind: str, *, reason: str, slot) -> None:
    """schedule.late (it turned down) or schedule.recovered (up again)."""
    event_emit(
        f"schedule.{kind}",
        subject=("schedule", schedule.pk),
        ids=_ids(schedule),
        payload={
            "name": str(schedule),
            "health": schedule.health,
            "reason": reason,
            "slot_at": clock.iso(slot),
            "alert_after_seconds": schedule.alert_after_seconds,
            "down_since": clock.iso(schedule.down_since),
        },
    )
