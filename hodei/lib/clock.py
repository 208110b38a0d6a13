"""The one place that tells the time, so tests can pin it."""

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()
