"""The database transport: the agent runs the control plane's service functions itself,
against PostgreSQL (or SQLite), and is woken by LISTEN/NOTIFY. For trusted hosts (the
agent holds the database's credentials); remote agents use ``agent.transport_http``."""

import os
import socket
import time

from django.db import DatabaseError, connection

from agent.transport import Assignment, HeartbeatReply, Registration, TransportError
from hodei import __version__
from hodei.lib.listen import Listener
from telemetry import metrics
from workermanager import agent_protocol, selectors, workers
from workermanager.models import Worker
from workermanager.notify import (
    CANCEL_CHANNEL,
    CHANNEL,
    WORKERS_CHANNEL,
    designated,
    notify_queued,
    queued_payload,
)

# How often at most an agent whose claims fill its slots tells the others (pass_on):
# agents with room hear of it within this, or when they are asked first for new work;
# in a drain, where every agent is busy, the NOTIFYs (and the claims they set off) would
# otherwise cost a third of a transaction per execution.
BACKLOG_TELL_SECONDS = 0.25


class DatabaseTransport:
    cheap_claims = False  # each claim is a query: made on NOTIFY, backlog or poll

    def __init__(self):
        self.worker: Worker | None = None
        self.listener = Listener([CHANNEL, CANCEL_CHANNEL, WORKERS_CHANNEL])
        # The online database agents, in id order, as (id, type): which of them is asked
        # first for an execution queued alone (notify.designated). Read again on every
        # heartbeat and whenever an agent registers.
        self.peers: list[tuple] = []
        self._first_types: set[str] = set()  # what this agent was asked first for
        self._backlog_told_at = float("-inf")
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
        self._read_peers()
        return Registration(worker_id=str(self.worker.id), name=self.worker.name)

    def _read_peers(self) -> None:
        # HTTP agents wait in the worker manager's long-polls, which take work as soon as
        # it is announced: never asked first here.
        self.peers = self._call(selectors.database_agents_online)

    def heartbeat(self, *, running) -> HeartbeatReply:
        reply = self._call(agent_protocol.agent_heartbeat, worker=self.worker, running=running)
        self._call(metrics.buffer.flush)
        self._read_peers()
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

    def settle_many(self, reports, *, free_after: int = 0, chunks=()) -> list[bool]:
        # free_after is for transports whose claims are requests of their own (HTTP):
        # the next claim here is one statement anyway.
        self.store_logs(chunks)
        return self._call(agent_protocol.agent_settle_many, worker=self.worker, reports=reports)

    def go_offline(self) -> None:
        self._call(metrics.buffer.flush)
        self._call(agent_protocol.agent_go_offline, worker=self.worker)

    def fileno(self) -> int | None:
        return self.listener.fileno() if self.listener.alive else None

    def wakeups(self) -> set[str]:
        """What the notifications received mean: cancel; work (claim); first (claim:
        this agent is asked first for it, and must ``pass_on`` if it has no room). Work
        another agent is asked first for is that agent's: nothing (notify.CHANNEL)."""
        kinds, self._first_types = set(), set()
        for channel, payload in self.listener.drain():
            if channel == CANCEL_CHANNEL:
                kinds.add("cancel")
            elif channel == CHANNEL:
                kinds.add(self._work_kind(payload))
            elif channel == WORKERS_CHANNEL:
                self._read_peers()
            else:  # the connection was lost: look at once
                kinds.add("work")
        kinds.discard(None)
        return kinds

    def _work_kind(self, payload: str) -> str | None:
        worker_type, execution_id = queued_payload(payload)
        if worker_type not in ("", self.worker.type):
            return None  # for agents of another type
        if not execution_id:
            return "work"
        peers = [pk for pk, kind in self.peers if worker_type in ("", kind)]
        first = designated(execution_id, peers)
        if first is None or self.worker.pk not in peers:
            return "work"  # it cannot tell who is first: look
        if first != self.worker.pk:
            return None
        self._first_types.add(worker_type)
        return "first"

    def pass_on(self, *, backlog: bool = False) -> None:
        """Announce work again, to every agent of this type: what this agent was asked
        first for and has no room for, or, with ``backlog``, whatever is queued (its
        claim filled every free slot, so more may be waiting)."""
        if backlog:
            # Agents with room need to hear it once, not after every claim of a drain.
            now = time.monotonic()
            if now - self._backlog_told_at < BACKLOG_TELL_SECONDS:
                return
            self._backlog_told_at = now
        types = {self.worker.type} if backlog else self._first_types
        self._first_types = set()
        for worker_type in sorted(types):
            self._call(notify_queued, worker_type=worker_type)

    def reset(self) -> None:
        connection.close()

    def close(self) -> None:
        self.listener.close()
