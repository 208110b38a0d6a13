"""Providers start and stop worker agents somewhere: local processes today; Docker or
Kubernetes tomorrow. A provider is small on purpose:

- ``start(managed)`` launches an agent running ``manage.py runworker --type T --name N
  --concurrency C [--labels ...]`` (``managed.name`` is the name it must register under)
  and returns a ``Launch`` (pid or other handle, host) or raises ``ProviderError``.
- ``is_alive(managed)`` tells whether that agent is still running; ``None`` if this
  process cannot tell (another host), in which case heartbeats decide.
- ``exit_reason(managed)`` says why an agent that is no longer alive stopped (exit code,
  last line of its log, a pod's termination reason), for the row's failure reason.
- ``stop(managed, grace_seconds)`` asks the agent to stop (SIGTERM: it finishes or
  cancels its work and goes offline) and forces it after the grace period.

Everything else (waiting for the agent to register, recording state, the API) lives in
``workermanager.managed`` and is the same for every provider. To add one, implement
these four methods and add the class to ``get_provider``."""

from dataclasses import dataclass
from typing import Protocol


class ProviderError(Exception):
    pass


@dataclass
class Launch:
    pid: int | None
    host: str


class WorkerProvider(Protocol):
    name: str

    def start(self, managed) -> Launch: ...

    def is_alive(self, managed) -> bool | None: ...

    def exit_reason(self, managed) -> str: ...

    def stop(self, managed, *, grace_seconds: float) -> None: ...


def get_provider(name: str) -> WorkerProvider:
    from workermanager.providers.local import LocalProcessProvider

    providers = {LocalProcessProvider.name: LocalProcessProvider}
    try:
        return providers[name]()
    except KeyError:
        raise ProviderError(f"Unknown worker provider {name!r}") from None
