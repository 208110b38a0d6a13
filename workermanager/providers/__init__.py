"""Providers start and stop worker agents somewhere: local processes of this host
(``local``) or Kubernetes pods (``kubernetes``). A provider is small on purpose:

- ``start(managed, credential=...)`` launches an agent in HTTP mode (``hodei-agent
  --server URL --type T --name N --concurrency C [--labels-json ...]``, or ``manage.py
  runworker --server ...``) that registers under ``managed.name`` with ``credential``,
  the worker credential the control plane made for it (give it through the agent's
  environment, ``HODEI_AGENT_TOKEN``, or a file: never its command line, and never the
  database's URL or the secret key), and returns a ``Launch`` (pid or other handle,
  host) or raises ``ProviderError``.
- ``is_alive(managed)`` tells whether that agent is still running; ``None`` if this
  process cannot tell (another host), in which case heartbeats decide.
- ``exit_reason(managed)`` says why an agent that is no longer alive stopped (exit code,
  last line of its log, a pod's termination reason), for the row's failure reason.
- ``stop(managed, grace_seconds)`` asks the agent to stop (SIGTERM: it finishes or
  cancels its work and goes offline) and forces it after the grace period.

Everything else (waiting for the agent to register, recording state, the API) lives in
``workermanager.managed`` and is the same for every provider. To add one, implement
these four methods and add the class to ``get_provider`` and its name to ``PROVIDERS``."""

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

    def start(self, managed, *, credential: str) -> Launch: ...

    def is_alive(self, managed) -> bool | None: ...

    def exit_reason(self, managed) -> str: ...

    def stop(self, managed, *, grace_seconds: float) -> None: ...


# The providers' names, for validating input without importing them (the kubernetes one
# loads the Kubernetes client, which only a worker manager that uses it needs).
PROVIDERS = ("local", "kubernetes")


def get_provider(name: str) -> WorkerProvider:
    if name == "local":
        from workermanager.providers.local import LocalProcessProvider

        return LocalProcessProvider()
    if name == "kubernetes":
        try:
            from workermanager.providers.kubernetes import KubernetesProvider
        except ImportError as exc:  # an install without the `kubernetes` package
            raise ProviderError(f"The kubernetes provider cannot load: {exc}") from exc
        return KubernetesProvider()
    raise ProviderError(f"Unknown worker provider {name!r}")
