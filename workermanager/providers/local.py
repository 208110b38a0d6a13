"""Agents as local processes of this host, each in a session of its own.

They run in HTTP mode (``runworker --server``, handed to the agent before Django loads):
they talk to the worker manager at HODEI_WORKERMANAGER_URL with the credential the
control plane made for them, passed in their environment. They get none of this
process's secrets: not the database's URL, not the secret key, not the keys job secrets
are encrypted with; only the basics of its environment and the agent's own settings."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

from workermanager.providers import Launch, ProviderError

# What an agent takes from this process's environment (the rest is left behind).
INHERITED_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    # The agent's own settings (agent.loop.AgentConfig.ENV) that the control plane has
    # no setting for.
    "HODEI_ISOLATION",
    "HODEI_SANDBOX_UID",
    "HODEI_SANDBOX_GID",
    "HODEI_LOG_FORMAT",
    "HODEI_LOG_LEVEL",
)
INHERITED_PREFIXES = ("OTEL_",)  # tracing, if this process traces
# The agent's settings both sides must agree on: the control plane's values.
SHARED_SETTINGS = (
    "HODEI_HEARTBEAT_SECONDS",
    "HODEI_POLL_SECONDS",
    "HODEI_KILL_GRACE_SECONDS",
    "HODEI_SHUTDOWN_GRACE_SECONDS",
    "HODEI_LOG_MAX_BYTES",
    "HODEI_LOG_FLUSH_BYTES",
    "HODEI_LOG_FLUSH_SECONDS",
)


def agent_env(credential: str) -> dict[str, str]:
    """The whole environment of a managed agent."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name in INHERITED_ENV or name.startswith(INHERITED_PREFIXES)
    }
    env.update({name: str(getattr(settings, name)) for name in SHARED_SETTINGS})
    env.update(
        PYTHONUNBUFFERED="1",
        HODEI_SERVER_URL=settings.HODEI_WORKERMANAGER_URL,
        HODEI_AGENT_TOKEN=credential,
    )
    return env


# Popen objects of the agents this process started, kept so that they are reaped when
# they exit (no zombies in a long-running service process).
_children: dict[int, subprocess.Popen] = {}


def _reap() -> None:
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[pid]


def _pid_running(pid: int, name: str) -> bool:
    """True if ``pid`` is alive (not a zombie) and is the agent called ``name``."""
    _reap()
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and name.encode() in cmdline


class LocalProcessProvider:
    name = "local"

    def start(self, managed, *, credential: str) -> Launch:
        log_dir = Path(settings.VAR_DIR) / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            str(Path(settings.BASE_DIR) / "manage.py"),
            "runworker",
            "--server",
            settings.HODEI_WORKERMANAGER_URL,
            "--type",
            managed.type,
            "--name",
            managed.name,
            "--concurrency",
            str(managed.concurrency),
        ]
        if managed.labels:
            # Structured, never a k=v string: a value may hold "," or "=".
            argv += ["--labels-json", json.dumps(managed.labels)]
        log_path = log_dir / f"{managed.name}.log"
        try:
            with open(log_path, "ab") as log_file:
                child = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=settings.BASE_DIR,
                    env=agent_env(credential),
                    # Its own session: a restart of this web worker does not take it down.
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            raise ProviderError(f"Could not start the agent process: {exc}") from exc
        _children[child.pid] = child
        return Launch(pid=child.pid, host=socket.gethostname())

    def exit_reason(self, managed) -> str:
        child = _children.get(managed.pid)
        code = child.poll() if child else None
        log_path = Path(settings.VAR_DIR) / "log" / f"{managed.name}.log"
        tail = ""
        try:
            tail = log_path.read_text(errors="replace")[-400:].strip().splitlines()[-1]
        except (OSError, IndexError):
            pass
        reason = f"agent process exited (code {code})" if code is not None else "agent exited"
        return f"{reason}: {tail}" if tail else reason

    def is_alive(self, managed) -> bool | None:
        if managed.host != socket.gethostname():
            return None
        return managed.pid is not None and _pid_running(managed.pid, managed.name)

    def stop(self, managed, *, grace_seconds: float) -> None:
        if not self.is_alive(managed):
            return
        try:
            os.killpg(managed.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline:
            if not _pid_running(managed.pid, managed.name):
                return
            time.sleep(0.05)
        try:
            os.killpg(managed.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        # The agent could not clean up in time. Its commands run in process groups of
        # their own and may outlive it; the reaper marks their executions lost.
        for _ in range(40):
            if not _pid_running(managed.pid, managed.name):
                return
            time.sleep(0.05)
        raise ProviderError(f"Agent process {managed.pid} did not stop.")
