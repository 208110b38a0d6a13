"""Agents as local processes of this host, each in a session of its own."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

from hodei.lib.env import database_url_from_settings
from workermanager.providers import Launch, ProviderError

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

    def start(self, managed) -> Launch:
        log_dir = Path(settings.VAR_DIR) / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            str(Path(settings.BASE_DIR) / "manage.py"),
            "runworker",
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
                    env={
                        **os.environ,
                        "PYTHONUNBUFFERED": "1",
                        "DATABASE_URL": database_url_from_settings(connection.settings_dict),
                    },
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
