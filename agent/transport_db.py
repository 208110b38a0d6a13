"""The database transport: the agent runs the control plane's service functions itself,
against PostgreSQL (or SQLite), and is woken by LISTEN/NOTIFY. For trusted hosts (the
agent holds the database's credentials); remote agents use ``agent.transport_http``."""

import os
import socket

from django.db import DatabaseError, connection

from agent.transport import Assignment, HeartbeatReply, Registration, TransportError
from hodei import __version__
from hodei.lib.listen import Listener
from telemetry import metrics
from workermanager import agent_protocol, workers
from workermanager.models import Worker
from workermanager.notify import CANCEL_CHANNEL, CHANNEL


class DatabaseTransport:
    cheap_claims = False  # each claim is a query: made on NOTIFY, backlog or poll

    def __init__(self):
        self.worker: Worker | None = None
        self.listener = Listener([CHANNEL, CANCEL_CHANNEL])
        # Metrics are pushed with the heartbeat, not one upsert per execution.
        metrics.buffer.batched = True

    def _call(self, function, **kwargs):
        try:
            return function(**kwargs)
        except DatabaseError as exc:
            raise TransportError(str(exc)) from exc

    def register(self, *, type, name, labels, capacity, isolation) -> Registration:
        self.worker, _ = self._call(
            workers.worker_register,
            type=type,
            name=name,
            labels=labels,
            capacity=capacity,
            hostname=socket.gethostname(),
            version=__version__,
            pid=os.getpid(),
            isolation=isolation,
        )
        self.listener.start()
        return Registration(worker_id=str(self.worker.id), name=self.worker.name)

    def heartbeat(self, *, running) -> HeartbeatReply:
        reply = self._call(agent_protocol.agent_heartbeat, worker=self.worker, running=running)
        self._call(metrics.buffer.flush)
        if not self.listener.alive:
            self.listener.start()
        return HeartbeatReply(draining=reply["draining"])

    def claim(self, *, limit) -> list[Assignment]:
        rows = self._call(agent_protocol.agent_claim, worker=self.worker, limit=limit)
        return [Assignment.from_dict(row) for row in rows]

    def control(self, *, running) -> dict[str, str]:
        return self._call(agent_protocol.agent_control, worker=self.worker, running=running)

    def store_logs(self, chunks) -> None:
        if chunks:
            self._call(agent_protocol.agent_store_logs, worker=self.worker, chunks=chunks)

    def settle(self, **report) -> bool:
        return self._call(agent_protocol.agent_settle, worker=self.worker, **report)

    def settle_many(self, reports) -> list[bool]:
        return self._call(agent_protocol.agent_settle_many, worker=self.worker, reports=reports)

    def go_offline(self) -> None:
        self._call(metrics.buffer.flush)
        self._call(agent_protocol.agent_go_offline, worker=self.worker)

    def fileno(self) -> int | None:
        return self.listener.fileno() if self.listener.alive else None

    def wakeups(self) -> set[str]:
        kinds = set()
        for channel, _payload in self.listener.drain():
            kinds.add("cancel" if channel == CANCEL_CHANNEL else "work")
        return kinds

    def reset(self) -> None:
        connection.close()

    def close(self) -> None:
        self.listener.close()
