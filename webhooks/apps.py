from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    """Webhook subscriptions: signed HTTP deliveries of events, with retries."""

    name = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from events import hooks as events_hooks
        from webhooks import sender, services

        # Both run in the event relay (manage.py relayevents), never where events happen:
        # a receiver's slowness reaches no request and no execution.
        events_hooks.consumers.connect(services.deliveries_fan_out)
        events_hooks.relay_tick.connect(sender.send_due)
