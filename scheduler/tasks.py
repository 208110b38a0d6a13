"""django-q2 entry points for scheduling: take ids, call one service, safe to run twice."""

from datetime import datetime

from scheduler import health, services


def fire_schedule(schedule_id: str, slot: str | None = None) -> str:
    """Fired by the schedule's django-q2 row; ``slot`` is the time it was due."""
    fire = services.schedule_fire(
        schedule_id=schedule_id, slot=datetime.fromisoformat(slot) if slot else None
    )
    return f"{fire.outcome} {fire.slot_at.isoformat()}" if fire else "nothing to do"


def maintain_schedules() -> str:
    health.cluster_seen()
    changed = health.schedules_check_health()
    return f"re-fired {services.schedules_resync()} stale schedule(s); {changed} changed health"
