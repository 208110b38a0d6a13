"""Writing events (the outbox) and purging old ones."""

import json
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q

from events.models import Event
from events.types import EVENT_TYPES
from hodei.lib import clock
from hodei.lib.rows import execute


def event_emit(type: str, *, subject: tuple[str, object], ids: dict, payload: dict) -> Event:
    """Write one event in the caller's transaction (it commits with the change it tells
    of, or not at all). ``ids`` are the subject ids receivers filter on (as strings);
    ``payload`` must never hold a secret value."""
    event = event_new(type, subject=subject, ids=ids, payload=payload)
    event.save(force_insert=True)
    return event


def event_new(type: str, *, subject: tuple[str, object], ids: dict, payload: dict) -> Event:
    """An unsaved event (``events_emit`` writes many in one INSERT)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"Unknown event type {type!r}")
    kind, pk = subject
    return Event(
        type=type,
        subject=f"{kind}:{pk}",
        subject_ids={k: str(v) for k, v in ids.items() if v is not None},
        payload=payload,
        created_at=clock.now(),
    )


def events_emit(events: list[Event]) -> None:
    """Write unsaved events (``event_new``) in one INSERT, in their order."""
    if events:
        execute(*events_statement(events))


def events_statement(events: list[Event]) -> tuple[str, list]:
    """The INSERT of ``events_emit`` and its values (for ``rows.execute_together``).

    A plain multi-row INSERT rather than ``bulk_create``: every execution's state change
    writes an event (an agent's claim and settle, the API's enqueue), and the ORM's
    compile and RETURNING cost more than the statement itself. The columns are the
    model's, less the id (the database numbers them) and the relay's own (NULL)."""
    ops, jsonb = connection.ops, "::jsonb" if connection.vendor == "postgresql" else ""
    rows, params = [], []
    for event in events:
        rows.append(f"(%s, %s, %s{jsonb}, %s{jsonb}, %s)")
        params += [
            event.type,
            event.subject,
            json.dumps(event.subject_ids),
            json.dumps(event.payload),
            ops.adapt_datetimefield_value(event.created_at),
        ]
    sql = (
        f"INSERT INTO {Event._meta.db_table} (type, subject, subject_ids, payload, "
        f"created_at) VALUES {', '.join(rows)}"
    )
    return sql, params


def events_purge(*, now=None, batch: int = 5000) -> int:
    """Delete events older than HODEI_EVENT_RETENTION_DAYS that every consumer has had
    (published to NATS when it is configured, and dispatched); in batches."""
    now = now or clock.now()
    cutoff = now - timedelta(days=settings.HODEI_EVENT_RETENTION_DAYS)
    done = Q(dispatched_at__isnull=False)
    if settings.HODEI_NATS_URL:
        done &= Q(published_at__isnull=False)
    total = 0
    while True:
        ids = list(
            Event.objects.filter(done, created_at__lt=cutoff).values_list("pk", flat=True)[:batch]
        )
        if not ids:
            return total
        total += Event.objects.filter(pk__in=ids).delete()[1].get("events.Event", 0)
