"""LISTEN for new work and cancellations on a dedicated autocommit connection.

Never on Django's own connection (DESIGN.md): a pooled connection would carry the
subscription into unrelated work. Any failure here only costs latency: the agent falls
back to polling and tries to listen again on its next heartbeat."""

import logging

import psycopg
from django.db import connection

from workermanager.notify import CANCEL_CHANNEL, CHANNEL

log = logging.getLogger("hodei.agent")

CHANNELS = {CHANNEL: "queued", CANCEL_CHANNEL: "cancel"}


class Listener:
    def __init__(self):
        self.conn: psycopg.Connection | None = None

    @property
    def alive(self) -> bool:
        return self.conn is not None and not self.conn.closed

    def start(self) -> bool:
        if connection.vendor != "postgresql":
            return False
        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("prepare_threshold", None)
        try:
            self.conn = psycopg.connect(**params, autocommit=True)
            for channel in CHANNELS:
                self.conn.execute(f"LISTEN {channel}")
        except psycopg.Error as exc:
            log.warning("LISTEN unavailable, polling instead: %s", exc)
            self.close()
            return False
        return True

    def fileno(self) -> int:
        return self.conn.fileno()

    def drain(self) -> list[tuple[str, str]]:
        """Notifications received so far, without blocking."""
        out = []
        try:
            self.conn.pgconn.consume_input()
            while (note := self.conn.pgconn.notifies()) is not None:
                out.append((CHANNELS.get(note.relname.decode(), "queued"), note.extra.decode()))
        except (psycopg.Error, OSError) as exc:
            log.warning("LISTEN connection lost, polling instead: %s", exc)
            self.close()
            out.append(("queued", ""))
        return out

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
        self.conn = None
