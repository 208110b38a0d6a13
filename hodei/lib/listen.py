"""LISTEN on PostgreSQL channels over a dedicated autocommit connection.

Never on Django's own connection (DESIGN.md): a pooled connection would carry the
subscription into unrelated work. Failures only cost latency: callers fall back to
polling and may ``start()`` again later."""

import logging

import psycopg
from django.db import connection

log = logging.getLogger("hodei")


class Listener:
    def __init__(self, channels: list[str]):
        self.channels = channels
        self.conn: psycopg.Connection | None = None

    @property
    def alive(self) -> bool:
        return self.conn is not None and not self.conn.closed

    def start(self) -> bool:
        if connection.vendor != "postgresql":
            return False
        params = connection.get_connection_params()
        for key in ("cursor_factory", "context", "prepare_threshold"):
            params.pop(key, None)
        try:
            self.conn = psycopg.connect(**params, autocommit=True)
            for channel in self.channels:
                self.conn.execute(f"LISTEN {channel}")
        except psycopg.Error as exc:
            log.warning("LISTEN unavailable, polling instead: %s", exc)
            self.close()
            return False
        return True

    def fileno(self) -> int:
        return self.conn.fileno()

    def drain(self) -> list[tuple[str, str]]:
        """(channel, payload) of the notifications received so far, without blocking. A
        lost connection yields one ("", "") so the caller looks for work at once."""
        out = []
        try:
            self.conn.pgconn.consume_input()
            while (note := self.conn.pgconn.notifies()) is not None:
                out.append((note.relname.decode(), note.extra.decode()))
        except (psycopg.Error, OSError) as exc:
            log.warning("LISTEN connection lost, polling instead: %s", exc)
            self.close()
            out.append(("", ""))
        return out

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
        self.conn = None
