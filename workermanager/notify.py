"""Wake-ups for idle agents over PostgreSQL LISTEN/NOTIFY.

The NOTIFY is sent inside the transaction that queues the execution, so PostgreSQL
delivers it exactly when the row becomes visible (on commit) and never on rollback.
Agents LISTEN on a dedicated autocommit connection, never on Django's own (DESIGN.md)."""

from django.db import connection

CHANNEL = "hodei_executions"
CANCEL_CHANNEL = "hodei_cancel"


def supports_notify() -> bool:
    return connection.vendor == "postgresql"


def notify_queued(worker_type: str) -> None:
    if supports_notify():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, worker_type])


def notify_cancel(execution_id) -> None:
    if supports_notify():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CANCEL_CHANNEL, str(execution_id)])
