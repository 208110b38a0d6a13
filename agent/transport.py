"""How an agent talks to the control plane: the interface the loop uses, whatever carries it.

Two transports implement it: ``agent.transport_db`` (straight to PostgreSQL, for trusted
hosts) and ``agent.transport_http`` (the worker manager's agent protocol, for agents
anywhere with only a URL and a credential). Both end in the same service functions
(``workermanager.agent_protocol``), so claim, heartbeat, log storage and settlement have
one owner.

This module is plain Python: an HTTP agent runs without Django settings."""

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Assignment:
    """One claimed execution, with everything needed to run it."""

    id: str
    command: str
    type: str
    env: dict[str, str]
    secret_env: dict[str, str] = field(default_factory=dict)
    timeout_seconds: int | None = None
    attempt: int = 1
    job_id: str = ""
    trace_parent: str = ""
    network: bool = True
    memory_limit_mb: int | None = None
    pids_limit: int | None = None
    cpu_limit: float | None = None

    @classmethod
    def from_dict(cls, data: dict) -> "Assignment":
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Registration:
    worker_id: str
    name: str
    # The interval the control plane expects heartbeats at, when it says (over HTTP).
    heartbeat_seconds: float | None = None


@dataclass(frozen=True)
class HeartbeatReply:
    draining: bool = False
    # Set when the control plane no longer accepts this agent (credential revoked,
    # worker deleted): the agent stops claiming, ends its work and exits with this.
    stop_reason: str = ""


class TransportError(Exception):
    """The control plane cannot be reached right now: keep the commands running, keep
    their output, and try again later."""


class Rejected(Exception):
    """The control plane refuses this agent for good (revoked credential)."""


class Transport(Protocol):
    # Whether ``claim`` costs nothing while no work comes (it starts or extends an HTTP
    # long-poll and hands over what one brought): the loop then calls it whenever a
    # slot is free. False: a claim is a query, made only when there may be work.
    cheap_claims: bool

    def register(
        self, *, type: str, name: str, labels: dict, capacity: int, isolation: str
    ) -> Registration: ...

    def heartbeat(self, *, running: list[str]) -> HeartbeatReply: ...

    def claim(self, *, limit: int) -> list[Assignment]: ...

    def control(self, *, running: list[str]) -> dict[str, str]:
        """execution id -> "cancel" (cancel requested) or "stop" (settled elsewhere, such
        as declared lost): what to kill among ``running``."""
        ...

    def store_logs(self, chunks: list) -> None:
        """Store (execution id, agent.output.Chunk) pairs; idempotent per (id, seq)."""
        ...

    def settle(
        self,
        *,
        execution_id: str,
        status: str,
        exit_code: int | None,
        error: str,
        log_bytes: int,
        log_truncated: bool,
        outputs: dict[str, str],
    ) -> bool: ...

    def settle_many(
        self, reports: list[dict], *, free_after: int = 0, chunks: list = ()
    ) -> list[bool]:
        """``settle`` for several runs at once (``execution_id`` plus settle's keywords
        each): whether each was recorded. All or none: a TransportError leaves every
        one to report again. ``chunks``: output to store first (``store_logs``'s), in
        the same round trip where the transport can. ``free_after``: the slots the
        agent has free once these are settled; a transport may claim for them in the
        same round trip, and hands what it claimed to the next ``claim``."""
        ...

    def go_offline(self) -> None: ...

    def fileno(self) -> int | None:
        """A descriptor that becomes readable when there may be work or a cancellation,
        or None (the loop then polls)."""
        ...

    def wakeups(self) -> set[str]:
        """After ``fileno()`` was readable: {"work", "first", "cancel"}, or a subset.
        "first": work this agent is asked first for, among agents that all heard of it;
        if it has no room it must ``pass_on``."""
        ...

    def pass_on(self, *, backlog: bool = False) -> None:
        """Let every agent know of the work this one was asked first for ("first") and
        has no room for, or, with ``backlog``, that more may be queued."""
        ...

    def reset(self) -> None:
        """After a TransportError: drop connections so the next call starts afresh."""
        ...

    def close(self) -> None: ...
