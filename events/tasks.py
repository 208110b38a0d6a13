"""django-q2 entry points of the events app."""

from events import services


def purge_events() -> str:
    return f"purged {services.events_purge()} event(s)"
