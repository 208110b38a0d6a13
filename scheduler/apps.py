from django.apps import AppConfig


class SchedulerConfig(AppConfig):
    name = "scheduler"
    verbose_name = "Schedules and workers"

    def ready(self) -> None:
        from events import hooks as events_hooks
        from scheduler import health

        # The dead-man check runs in the event relay too: it must not depend on qcluster.
        events_hooks.relay_tick.connect(health.check_from_relay)
