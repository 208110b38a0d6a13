"""Helpers for tests that run Hodei's processes for real."""

import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_agent(env: dict, *, name: str, type: str = "default", concurrency: int = 1, extra=()):
    """Start ``manage.py runworker`` and wait until it has registered (its log says so).
    Its log goes to a temporary file: ``proc.log_path``."""
    fd, log_name = tempfile.mkstemp(prefix=f"agent-{name}-", suffix=".log")
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "runworker",
            "--type",
            type,
            "--name",
            name,
            "--concurrency",
            str(concurrency),
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=fd,
        stderr=subprocess.STDOUT,
    )
    os.close(fd)
    proc.log_path = Path(log_name)
    deadline = time.monotonic() + 20
    while "registered as worker" not in proc.log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            tail = proc.log_path.read_text(errors="replace")[-2000:]
            raise AssertionError(f"agent {name} did not start: {tail}")
        time.sleep(0.02)
    return proc


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> int | None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def start_service(
    env: dict,
    service: str,
    *,
    args=(),
    healthy: bool = True,
    timeout: float = 30.0,
    port: int | None = None,
) -> tuple[subprocess.Popen, str]:
    """Serve ``service`` with gunicorn on ``port`` (default: a free one; extra gunicorn
    ``args`` win over the defaults) and wait until /health answers: 200, or any answer
    unless ``healthy``. Its output goes to ``proc.log_path``."""
    port = port or free_port()
    fd, log_name = tempfile.mkstemp(prefix=f"gunicorn-{service}-", suffix=".log")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "hodei.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--graceful-timeout",
            "5",
            "--no-control-socket",
            *args,
        ],
        cwd=ROOT,
        env={**env, "HODEI_SERVICE": service},
        stdout=fd,
        stderr=subprocess.STDOUT,
    )
    os.close(fd)
    proc.log_path = Path(log_name)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            response = requests.get(f"{base}/health", timeout=10)
            if response.status_code == 200 or not healthy:
                return proc, base
        except requests.ConnectionError:
            time.sleep(0.1)
    stop(proc)
    tail = proc.log_path.read_text(errors="replace")[-2000:]
    raise AssertionError(f"{service} did not start on {base}: {tail}")


def wait_for(predicate, *, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def start_qcluster(env: dict) -> subprocess.Popen:
    """Start ``manage.py qcluster`` (django-q2 plus Hodei's ticker)."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return proc


def start_relay(env: dict) -> subprocess.Popen:
    """Start ``manage.py relayevents``; its log goes to ``proc.log_path``."""
    fd, log_name = tempfile.mkstemp(prefix="relay-", suffix=".log")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "relayevents"],
        cwd=ROOT,
        env=env,
        stdout=fd,
        stderr=subprocess.STDOUT,
    )
    os.close(fd)
    proc.log_path = Path(log_name)
    return proc


def stop_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM a process group, as process managers do; SIGKILL it after ``timeout``."""
    import os
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def sleep_marker() -> str:
    """A `sleep` duration no other process uses (an hour and a unique fraction): a test
    finds the processes of its command in the host's process table by it."""
    return f"3600.{random.randrange(10**8, 10**9)}"


def processes_running(marker: str) -> list[int]:
    """Host pids (not zombies) whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if marker in cmdline and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


class Ledger:
    """A record of what commands really ran, kept outside their sandboxes: a TCP server
    of the test's to which a command writes lines (``echo ... > $LEDGER`` with bash's
    /dev/tcp), as a file would be written if jobs could write host files."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"/dev/tcp/127.0.0.1/{self.server.getsockname()[1]}"
        self._lines: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
            with self._lock:
                self._lines.extend(data.decode().split())

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def close(self) -> None:
        self.server.close()
