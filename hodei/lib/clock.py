"""The one place that tells the time, so tests can pin it."""

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()


def iso(value: datetime | None) -> str | None:
    """A time as the APIs and events write it: ISO 8601, UTC as ``Z``."""
    return value.isoformat().replace("+00:00", "Z") if value else None
