"""Periodic maintenance tasks, declared here in code and created in django-q2 idempotently
by name after every ``migrate``: nobody creates them by hand, and a change here updates
them."""

from django_q.models import Schedule as QSchedule

# name -> (function path, interval in minutes)
PERIODIC_TASKS = {
    "hodei.maintain_workers": ("workermanager.tasks.maintain_workers", 1),
    "hodei.maintain_schedules": ("scheduler.tasks.maintain_schedules", 1),
    "hodei.purge_executions": ("workermanager.tasks.purge_executions", 10),
    "hodei.purge_events": ("events.tasks.purge_events", 10),
}


def ensure_periodic_tasks(**_kwargs) -> None:
    for name, (func, minutes) in PERIODIC_TASKS.items():
        QSchedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": QSchedule.MINUTES,
                "minutes": minutes,
                "repeats": -1,
            },
        )
