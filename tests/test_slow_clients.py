"""Slow clients (a header line every few seconds) against the production path: nginx in
front of gunicorn (deploy/nginx/). Against gunicorn alone they hold every thread and
/health stops answering; through nginx, 50 of them change nothing."""

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.processes import ROOT, free_port, start_service, stop

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TEMPLATES = ROOT / "deploy" / "nginx" / "templates"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(NGINX).exists(), reason="needs nginx (apt-get install nginx)"),
]


def render(template: str, values: dict[str, str]) -> str:
    """The nginx image's substitution: ${NAME} of the given names only ($host stays)."""
    return re.sub(r"\$\{(\w+)\}", lambda m: values.get(m[1], m[0]), template)


@pytest.fixture
def gunicorn(child_env):
    # Few threads, as in production per process: easy to exhaust without a proxy.
    proc, base = start_service(child_env, "orchestrator", args=["--threads", "2"])
    yield base
    stop(proc)


@pytest.fixture
def nginx(gunicorn, tmp_path):
    upstream = gunicorn.removeprefix("http://")
    port = free_port()
    values = {
        "HODEI_ORCHESTRATOR_UPSTREAM": upstream,
        "HODEI_SCHEDULER_UPSTREAM": upstream,
        "HODEI_WORKERMANAGER_UPSTREAM": upstream,
        "HODEI_ORCHESTRATOR_LISTEN": f"127.0.0.1:{port}",
        "HODEI_SCHEDULER_LISTEN": f"127.0.0.1:{free_port()}",
        "HODEI_WORKERMANAGER_LISTEN": f"127.0.0.1:{free_port()}",
        "HODEI_NGINX_DIR": str(TEMPLATES),
    }
    site = tmp_path / "hodei.conf"
    site.write_text(render((TEMPLATES / "hodei.conf.template").read_text(), values))
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "worker_processes 1;\nevents { worker_connections 1024; }\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path}/body;\n"
        f"  proxy_temp_path {tmp_path}/proxy;\n  include {site};\n}}\n"
    )
    proc = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail(f"nginx did not start: {proc.stderr.read().decode()[-2000:]}")
    yield base
    proc.terminate()
    proc.wait(10)


def slow_clients(base: str, count: int) -> list[socket.socket]:
    host, port = base.removeprefix("http://").split(":")
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")  # and never finish
        sockets.append(sock)
    return sockets


def health_seconds(base: str, timeout: float = 5.0) -> float:
    start = time.monotonic()
    try:
        response = requests.get(f"{base}/health", timeout=timeout)
    except requests.Timeout:
        return float("inf")
    assert response.status_code == 200
    return time.monotonic() - start


def test_fifty_slow_clients_do_not_stop_health_through_nginx(nginx):
    sockets = slow_clients(nginx, 50)
    try:
        time.sleep(0.5)
        for sock in sockets:
            sock.sendall(b"X-Slow: 1\r\n")
        assert max(health_seconds(nginx) for _ in range(5)) < 1.0
    finally:
        for sock in sockets:
            sock.close()


def test_without_the_proxy_a_few_slow_clients_stop_gunicorn(gunicorn):
    # What the proxy is for (and proof that the test above could fail).
    sockets = slow_clients(gunicorn, 10)
    try:
        time.sleep(0.5)
        assert health_seconds(gunicorn, timeout=2.0) > 1.0
    finally:
        for sock in sockets:
            sock.close()
