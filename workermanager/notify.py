"""Wake-ups over PostgreSQL LISTEN/NOTIFY.

A NOTIFY is sent inside the transaction that makes the change, so PostgreSQL delivers it
exactly when the change becomes visible (on commit) and never on rollback. Listeners use
a dedicated autocommit connection, never Django's own (DESIGN.md). On SQLite there is no
NOTIFY: listeners poll."""

from django.db import connection

CHANNEL = "hodei_executions"  # an execution was queued; payload: its worker type
CANCEL_CHANNEL = "hodei_cancel"  # a running execution is to be cancelled; payload: its id
WORKERS_CHANNEL = "hodei_workers"  # a worker registered; payload: its name


def supports_notify() -> bool:
    return connection.vendor == "postgresql"


def _notify(channel: str, payload: str) -> None:
    if supports_notify():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [channel, payload])


def notify_queued(worker_type: str) -> None:
    _notify(CHANNEL, worker_type)


def notify_cancel(execution_id) -> None:
    _notify(CANCEL_CHANNEL, str(execution_id))


def notify_registered(worker_name: str) -> None:
    _notify(WORKERS_CHANNEL, worker_name)
