"""Wake-ups over PostgreSQL LISTEN/NOTIFY.

A NOTIFY is sent inside the transaction that makes the change, so PostgreSQL delivers it
exactly when the change becomes visible (on commit) and never on rollback. Listeners use
a dedicated autocommit connection, never Django's own (DESIGN.md). On SQLite there is no
NOTIFY: listeners poll."""

from django.db import connection

from hodei.lib.rows import execute

# An execution was queued. Payload: its worker type, and, when one execution was queued
# alone, a space and its id: of the database agents, only the one that id designates
# (``designated``) claims, so one row does not send every idle agent to the database; it
# announces the work again without an id when it has no room. Without an id (several
# queued together), every agent of the type claims.
CHANNEL = "hodei_executions"
CANCEL_CHANNEL = "hodei_cancel"  # a running execution is to be cancelled; payload: its id
WORKERS_CHANNEL = "hodei_workers"  # a worker registered; payload: its name


def supports_notify() -> bool:
    return connection.vendor == "postgresql"


NOTIFY_SQL = "SELECT pg_notify(%s, %s)"


def _notify(channel: str, payload: str) -> None:
    if supports_notify():
        execute(NOTIFY_SQL, [channel, payload])


def notify_queued(worker_type: str, execution_id=None) -> None:
    _notify(CHANNEL, _queued(worker_type, execution_id))


def notify_queued_statement(worker_type: str, execution_id) -> tuple[str, list] | None:
    """``notify_queued``'s statement, to run with others (``rows.execute_together``);
    None where there is no NOTIFY."""
    if not supports_notify():
        return None
    return NOTIFY_SQL, [CHANNEL, _queued(worker_type, execution_id)]


def _queued(worker_type: str, execution_id) -> str:
    return f"{worker_type} {execution_id}" if execution_id else worker_type


def queued_payload(payload: str) -> tuple[str, str]:
    """A CHANNEL payload as (worker type, execution id or "")."""
    worker_type, _, execution_id = payload.partition(" ")
    return worker_type, execution_id


def designated(execution_id: str, peers: list) -> object | None:
    """Which of ``peers`` (the ids of the online workers that may take it, in a fixed
    order) is asked first for an execution queued alone: a choice spread evenly by the
    id's random last bits (UUIDv7), the same in every agent. None when it cannot tell."""
    try:
        bits = int(execution_id.replace("-", "")[-8:], 16)
    except ValueError:
        return None
    return peers[bits % len(peers)] if peers else None


def notify_cancel(execution_id) -> None:
    _notify(CANCEL_CHANNEL, str(execution_id))


def notify_registered(worker_name: str) -> None:
    _notify(WORKERS_CHANNEL, worker_name)
