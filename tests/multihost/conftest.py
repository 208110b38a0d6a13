"""Two agent "hosts" made of Linux network namespaces, and the control plane beside them.

The topology is a small LAN, as agents on other machines see a control plane::

    host side (this process, gunicorn, PostgreSQL, the ledger)
        bridge hdbr<pid>  10.213.N.1/24
          |-- veth hda<pid> ==== eth0 10.213.N.2  in netns hodei-ha-<pid>  ("host-a")
          '-- veth hdb<pid> ==== eth0 10.213.N.3  in netns hodei-hb-<pid>  ("host-b")

The worker manager listens on the bridge's address (and 127.0.0.1, for its health
check), so both hosts reach it at one URL and neither can reach anything else of the
host (no route, no loopback of ours). ``ip link set hda<pid> down`` cuts host A's cable:
its packets are dropped, not refused, as when a real link fails. Each agent also gets a
hostname of its own (a UTS namespace), so its default worker name and $HOSTNAME in its
commands say which host it is.

Creating all this needs root (CI runs as root). Where it cannot be created the tests are
skipped with the reason, never silently passed. Everything is removed at the end, even
after a failure; what a killed session left behind (names carry its pid) is removed by
the next one."""

import ipaddress
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ISOLATION
from tests.processes import Ledger, free_port, start_service, stop, wait_for

VENV_BIN = Path(sys.executable).parent
AGENT = str(VENV_BIN / "hodei-agent")
# Where free /24s are looked for (a private range nothing here uses).
POOL = ipaddress.ip_network("10.213.0.0/16")
# The control plane's liveness window: heartbeats every 0.5 s, gone after 4 missed (2 s).
HEARTBEAT_SECONDS, MISSED_HEARTBEATS = "0.5", "4"
IP = shutil.which("ip") or "/usr/sbin/ip"
OWN_NAMES = re.compile(r"^(?:hodei-h[ab]-|hdbr|hd[ab])(\d+)$")


def ip(*args: str, netns: str | None = None) -> str:
    """Run ``ip ARGS`` (inside ``netns``); a failure raises with ip's own message."""
    argv = [IP, *(("netns", "exec", netns, IP) if netns else ()), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


class NetworkError(Exception):
    pass


def namespaces_problem() -> str | None:
    """Why network namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns add); CI runs as root"
    for tool in ("ip", "unshare", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (iproute2, util-linux and curl are needed)"
    return None


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def remove_leftovers() -> None:
    """Namespaces and links of earlier sessions that were killed before their teardown
    (their pid is gone). Other live sessions' are left alone."""
    for line in ip("netns", "list").splitlines():
        name = line.split()[0] if line.split() else ""
        found = OWN_NAMES.match(name)
        if found and not _pid_alive(int(found.group(1))):
            subprocess.run([IP, "netns", "delete", name], capture_output=True)
    for line in ip("-o", "link", "show").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        found = OWN_NAMES.match(name)
        if found and not _pid_alive(int(found.group(1))):
            subprocess.run([IP, "link", "delete", name], capture_output=True)


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 of POOL that no address or route of this host overlaps."""
    taken = []
    for line in ip("-4", "-o", "addr", "show").splitlines():
        taken.append(ipaddress.ip_interface(line.split()[3]).network)
    for line in ip("-4", "route", "show", "table", "all").splitlines():
        first = line.split()[0] if line.split() else ""
        try:
            taken.append(ipaddress.ip_network(first, strict=False))
        except ValueError:
            continue  # "default", "local", "broadcast"...
    candidates = list(POOL.subnets(new_prefix=24))[1:-1]
    random.shuffle(candidates)
    for subnet in candidates:
        if not any(subnet.overlaps(net) for net in taken if net.prefixlen > 0):
            return subnet
    raise NetworkError(f"no free /24 in {POOL}")


@dataclass
class Host:
    """One agent host: a network namespace with its own address and hostname."""

    label: str  # "a"
    netns: str  # hodei-ha-<pid>
    hostname: str  # host-a
    address: str  # 10.213.N.2
    link: str  # the host-side end of its cable: hda<pid>

    def argv(self, *command: str) -> list[str]:
        """``command`` run on this host: in its network namespace, under its hostname.
        Every step execs the next, so the pid Popen returns is the command's own."""
        return [
            IP,
            "netns",
            "exec",
            self.netns,
            "unshare",
            "--uts",
            "--",
            "sh",
            "-c",
            'hostname "$0" && exec "$@"',
            self.hostname,
            *command,
        ]

    def run(self, *command: str, input: str | None = None, timeout: float = 30):
        return subprocess.run(
            self.argv(*command),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": "/usr/bin:/bin"},
        )


class Network:
    """The bridge, both hosts and their cables (see the module's docstring)."""

    def __init__(self):
        tag = os.getpid()
        self.subnet = free_subnet()
        first = self.subnet.network_address
        self.gateway = str(first + 1)
        self.bridge = f"hdbr{tag}"
        self.hosts = {
            label: Host(
                label=label,
                netns=f"hodei-h{label}-{tag}",
                hostname=f"host-{label}",
                address=str(first + 2 + i),
                link=f"hd{label}{tag}",
            )
            for i, label in enumerate("ab")
        }

    def create(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for host in self.hosts.values():
            inner = f"{host.link}n"
            ip("netns", "add", host.netns)
            ip("link", "add", host.link, "type", "veth", "peer", "name", inner)
            ip("link", "set", inner, "netns", host.netns)
            ip("link", "set", host.link, "master", self.bridge)
            ip("link", "set", host.link, "up")
            ip("link", "set", "lo", "up", netns=host.netns)
            ip("link", "set", inner, "name", "eth0", netns=host.netns)
            ip("addr", "add", f"{host.address}/24", "dev", "eth0", netns=host.netns)
            ip("link", "set", "eth0", "up", netns=host.netns)

    def cut(self, host: Host) -> None:
        """Unplug ``host``'s cable: its packets are dropped from now on, silently."""
        ip("link", "set", host.link, "down")

    def restore(self, host: Host) -> None:
        ip("link", "set", host.link, "up")

    def restore_all(self) -> None:
        for host in self.hosts.values():
            try:
                self.restore(host)
            except NetworkError:
                pass

    def reachable(self, host: Host, url: str) -> bool:
        done = host.run("curl", "-s", "-m", "2", "-o", "/dev/null", f"{url}/health")
        return done.returncode == 0

    def destroy(self) -> None:
        """Remove everything, whatever state it is in. Processes still inside a
        namespace (only ours can be) are killed first: they would keep it alive."""
        for host in self.hosts.values():
            listed = subprocess.run(
                [IP, "netns", "pids", host.netns], capture_output=True, text=True
            )
            for pid in listed.stdout.split():
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run([IP, "netns", "delete", host.netns], capture_output=True)
            subprocess.run([IP, "link", "delete", host.link], capture_output=True)
        subprocess.run([IP, "link", "delete", self.bridge], capture_output=True)


@pytest.fixture(scope="session")
def network():
    """The two hosts; skips every test that uses it, saying why, where they cannot be
    made."""
    problem = namespaces_problem()
    if problem:
        pytest.skip(problem)
    try:
        remove_leftovers()
        net = Network()
    except (NetworkError, OSError) as exc:
        pytest.skip(f"cannot create network namespaces here: {exc}")
    try:
        net.create()
    except NetworkError as exc:
        net.destroy()
        pytest.skip(f"cannot create network namespaces here: {exc}")
    try:
        yield net
    finally:
        net.destroy()


@dataclass
class ControlPlane:
    url: str  # as the hosts reach it
    proc: subprocess.Popen


@pytest.fixture(scope="module")
def control_plane(network, child_env):
    """A gunicorn worker manager on the host side, against the test database, listening
    on the bridge's address: what both hosts call the control plane."""
    port = free_port()
    env = {
        **child_env,
        "HODEI_HEARTBEAT_SECONDS": HEARTBEAT_SECONDS,
        "HODEI_MISSED_HEARTBEATS": MISSED_HEARTBEATS,
        "HODEI_POLL_SECONDS": "0.2",
        "ALLOWED_HOSTS": f"127.0.0.1,localhost,{network.gateway}",
        "HODEI_WORKERMANAGER_THREADS": "32",
    }
    proc, _ = start_service(
        env,
        "workermanager",
        port=port,
        args=("--bind", f"{network.gateway}:{port}", "--workers", "2", "--threads", "32"),
    )
    url = f"http://{network.gateway}:{port}"
    try:
        for host in network.hosts.values():
            assert network.reachable(host, url), f"{host.hostname} cannot reach {url}"
        yield ControlPlane(url=url, proc=proc)
    finally:
        stop(proc)
        proc.log_path.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def cables_restored(request):
    """A test that cut a cable and failed leaves it plugged in for the next."""
    yield
    if "network" in request.fixturenames:
        request.getfixturevalue("network").restore_all()


class HostLedger(Ledger):
    """The ledger (tests.processes.Ledger) on the bridge's address, where commands on
    both hosts reach it: ``echo ... > $LEDGER`` with bash's /dev/tcp."""

    def __init__(self, address: str):
        self.server = socket.create_server((address, 0), backlog=256)
        self.address = f"/dev/tcp/{address}/{self.server.getsockname()[1]}"
        self._lines: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()


@pytest.fixture
def ledger(network):
    book = HostLedger(network.gateway)
    yield book
    book.close()


def environ_of(pid: int) -> dict:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def cmdline_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def log_of(proc) -> str:
    return proc.log_path.read_text(errors="replace")


@pytest.fixture
def host_agents(control_plane):
    """start(host, token=..., name=...) -> a ``hodei-agent`` process running on ``host``,
    registered. Its environment holds the server's URL, the token and PATH, nothing
    else; its working directory is an empty one."""
    started = []

    def start(
        host: Host,
        *,
        token: str,
        name: str | None = None,
        concurrency: int = 1,
        args=(),
        wait: bool = True,
    ) -> subprocess.Popen:
        fd, log_name = tempfile.mkstemp(prefix=f"multihost-{host.hostname}-", suffix=".log")
        argv = [AGENT, "--type", "default", "--concurrency", str(concurrency)]
        argv += ["--shutdown-grace-seconds", "1", *args]
        if name:
            argv += ["--name", name]
        if ISOLATION != "sandbox":
            argv += ["--isolation", ISOLATION]
        proc = subprocess.Popen(
            host.argv(*argv),
            cwd=tempfile.mkdtemp(prefix="multihost-cwd-"),
            env={
                "PATH": "/usr/bin:/bin",
                "HODEI_SERVER_URL": control_plane.url,
                "HODEI_REGISTRATION_TOKEN": token,
            },
            stdout=fd,
            stderr=subprocess.STDOUT,
        )
        os.close(fd)
        proc.log_path = Path(log_name)
        proc.host = host
        started.append(proc)
        if wait:
            wait_for(
                lambda: "registered as worker" in log_of(proc) or proc.poll() is not None,
                timeout=20,
            )
            assert proc.poll() is None, log_of(proc)
        return proc

    yield start
    for proc in started:
        stop(proc, timeout=20)
        proc.log_path.unlink(missing_ok=True)


def settle_all(execution_ids, *, timeout: float):
    """Wait until none of ``execution_ids`` is queued or running; returns their rows."""
    from workermanager.choices import ExecutionStatus
    from workermanager.models import Execution

    pending = (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)
    deadline = time.monotonic() + timeout
    while True:
        rows = list(Execution.objects.filter(pk__in=execution_ids).select_related("worker"))
        if not any(row.status in pending for row in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)
