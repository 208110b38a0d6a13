from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    """Metrics, tracing and structured logs: what operators watch Hodei with."""

    name = "telemetry"
    verbose_name = "Telemetry"
