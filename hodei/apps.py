from django.apps import AppConfig


class HodeiConfig(AppConfig):
    """The core: settings, the API's shared pieces, template tags and system checks."""

    name = "hodei"
    verbose_name = "Hodei"

    def ready(self) -> None:
        from hodei import checks  # noqa: F401  (registers the system checks)
