"""The HTTP agent for real: ``hodei-agent`` (and ``manage.py runworker --server``)
processes with no database credentials or secret key, against a real gunicorn worker
manager on a real port, over HTTPS with a private CA, and across a network that a test
proxy cuts and restores."""

import datetime
import ipaddress
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from agent.transport_http import HttpTransport
from tests.conftest import ISOLATION
from tests.factories import JobFactory
from tests.processes import ROOT, free_port, start_service, stop, wait_for
from workermanager import credentials
from workermanager.choices import ExecutionStatus, WorkerStatus
from workermanager.models import Execution, Worker
from workermanager.services import LogChunk, execution_cancel, execution_enqueue

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

AGENT = str(Path(sys.executable).parent / "hodei-agent")
SECRETS = ("DATABASE_URL", "SECRET_KEY", "HODEI_SECRETS_KEY")


def agent_env(**extra) -> dict:
    """All an HTTP agent gets: no database, no secret key, no settings module."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": tempfile.gettempdir(),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "HODEI_HEARTBEAT_SECONDS": "0.5",
        "HODEI_POLL_SECONDS": "0.2",
        "HODEI_ISOLATION": ISOLATION,
        # Out of this checkout's var/: nothing there (such as var/secret_key) to find.
        "HODEI_VAR_DIR": tempfile.mkdtemp(prefix="hodei-agent-var-"),
    }
    env.update(extra)
    return env


def start_agent(server: str, *, name: str, argv=None, env=None, wait: bool = True, args=()):
    fd, log_name = tempfile.mkstemp(prefix=f"http-agent-{name}-", suffix=".log")
    proc = subprocess.Popen(
        [*(argv or [AGENT]), "--server", server, "--name", name, "--type", "default", *args],
        cwd=ROOT,
        env=env or agent_env(),
        stdout=fd,
        stderr=subprocess.STDOUT,
    )
    os.close(fd)
    proc.log_path = Path(log_name)
    if wait:
        wait_for(
            lambda: "registered as worker" in log_of(proc) or proc.poll() is not None, timeout=20
        )
        assert proc.poll() is None, log_of(proc)
    return proc


def log_of(proc) -> str:
    return proc.log_path.read_text(errors="replace")


def environ_of(pid: int) -> dict:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def settled(execution, timeout=20.0) -> Execution:
    def done():
        row = Execution.objects.get(pk=execution.pk)
        return row if row.status not in (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING) else None

    return wait_for(done, timeout=timeout)


def log_text(execution) -> str:
    return "".join(execution.logs.order_by("seq").values_list("message", flat=True))


@pytest.fixture(scope="module")
def service(child_env):
    proc, base = start_service(child_env, "workermanager", args=("--threads", "8"))
    yield base
    stop(proc)


@pytest.fixture
def agents():
    started = []

    def add(proc):
        started.append(proc)
        return proc

    yield add
    for proc in started:
        stop(proc)


def registration_token(**options) -> str:
    return credentials.registration_token_create(**options)[1]


def test_an_http_agent_runs_work_without_database_credentials_and_cancels(service, agents):
    env = agent_env(HODEI_REGISTRATION_TOKEN=registration_token(worker_type="default"))
    proc = agents(start_agent(service, name="remote-e2e", env=env, args=["--concurrency", "2"]))
    environ = environ_of(proc.pid)
    assert not set(SECRETS) & set(environ), sorted(environ)
    assert "DJANGO_SETTINGS_MODULE" not in environ
    worker = Worker.objects.get(name="remote-e2e")
    assert (worker.status, worker.capacity) == (WorkerStatus.ONLINE, 2)

    job = JobFactory(
        command="echo token=$TOKEN; echo to stderr >&2", secret_env={"TOKEN": "abc-123-xyz"}
    )
    done = settled(execution_enqueue(job=job))
    assert done.status == ExecutionStatus.SUCCEEDED, (done.error, log_of(proc))
    assert done.worker_id == worker.pk and done.exit_code == 0
    text = log_text(done)
    assert "token=********" in text and "abc-123-xyz" not in text
    assert "to stderr" in text

    long_one = execution_enqueue(command="echo started; sleep 60")
    wait_for(lambda: "started" in log_text(long_one), timeout=15)
    execution_cancel(execution=Execution.objects.get(pk=long_one.pk))
    cancelled_at = time.monotonic()
    assert settled(long_one).status == ExecutionStatus.CANCELLED
    assert time.monotonic() - cancelled_at < 5

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, log_of(proc)
    assert Worker.objects.get(pk=worker.pk).status == WorkerStatus.OFFLINE


def test_a_finish_brings_the_next_work_in_the_same_round_trip(service):
    transport = HttpTransport(
        server_url=service, registration_token=registration_token(worker_type="default")
    )
    transport.register(
        type="default", name="finish-claims", labels={}, capacity=1, isolation="none"
    )
    try:
        first, second, third = (execution_enqueue(command=f"echo {n}") for n in range(3))
        # The first comes by a long-poll (its thread hands it over).
        claimed = wait_for(lambda: transport.claim(limit=1), timeout=10)
        assert [a.id for a in claimed] == [str(first.pk)]
        report = {"execution_id": claimed[0].id, "status": "succeeded", "exit_code": 0}
        report.update(error="", log_bytes=0, log_truncated=False, outputs={})

        # Its finish, with its last output, frees the one slot: the server stores the
        # output, records the outcome and claims the next in the same answer, and the
        # loop's next claim takes it without another request.
        output = LogChunk(seq=0, stream="stdout", message="0\n", created_at=time.time())
        done = transport.settle_many([report], free_after=1, chunks=[(claimed[0].id, output)])
        assert done == [True]
        assert list(first.logs.values_list("message", flat=True)) == ["0\n"]
        assert [a.id for a in transport.claim(limit=1)] == [str(second.pk)]
        assert transport._claim_limit == 0  # no long-poll was needed
        statuses = dict(Execution.objects.values_list("pk", "status"))
        assert [statuses[e.pk] for e in (first, second, third)] == [
            "succeeded",
            "running",
            "queued",
        ]
        assert Execution.objects.get(pk=second.pk).worker.name == "finish-claims"
    finally:
        transport.go_offline()
        transport.close()


def big_finish(service, runs: int, *, output_bytes: int):
    """A transport holding ``runs`` claimed executions, and a report of each with
    $HODEI_OUTPUT values of 64 KB and an output chunk of ``output_bytes``."""
    transport = HttpTransport(
        server_url=service, registration_token=registration_token(worker_type="default")
    )
    transport.register(
        type="default", name="big-finish", labels={}, capacity=runs, isolation="none"
    )
    for n in range(runs):
        execution_enqueue(command=f"echo {n}")
    claimed = []
    wait_for(
        lambda: claimed.extend(transport.claim(limit=runs - len(claimed))) or len(claimed) == runs
    )
    report = {"status": "succeeded", "exit_code": 0, "error": "", "log_bytes": 0}
    report.update(log_truncated=False, outputs={"BIG": "x" * 64_000})
    reports = [{**report, "execution_id": a.id} for a in claimed]
    message = "y" * output_bytes
    chunks = [
        (a.id, LogChunk(seq=0, stream="stdout", message=message, created_at=time.time()))
        for a in claimed
    ]
    return transport, reports, chunks, message


@pytest.mark.parametrize(
    "runs, output_bytes",
    [
        # 900 KB of reports fit the server's 1 MiB; with 200 KB of output they do not.
        (14, 14_000),
        # 1.1 MB of reports alone do not fit: they go in halves.
        (17, 100),
    ],
)
def test_a_finish_too_large_for_the_server_is_sent_in_parts(service, runs, output_bytes):
    transport, reports, chunks, message = big_finish(service, runs, output_bytes=output_bytes)
    try:
        assert transport.settle_many(reports, chunks=chunks) == [True] * runs
        done = Execution.objects.filter(pk__in=[r["execution_id"] for r in reports])
        assert [e.status for e in done] == [ExecutionStatus.SUCCEEDED] * runs
        assert all(e.logs.get().message == message for e in done)
        assert all(len(e.outputs["BIG"]) == 64_000 for e in done)
    finally:
        transport.go_offline()
        transport.close()


def test_manage_py_runworker_with_server_is_the_same_agent(service, agents):
    worker, credential = credentials.worker_enroll(
        name="via-manage-py", type="default", labels={}, capacity=1
    )
    argv = [sys.executable, "manage.py", "runworker"]
    env = agent_env(HODEI_AGENT_TOKEN=credential)
    proc = agents(start_agent(service, name="via-manage-py", argv=argv, env=env))
    assert not set(SECRETS) & set(environ_of(proc.pid))
    done = settled(execution_enqueue(command="echo via manage.py"))
    assert done.status == ExecutionStatus.SUCCEEDED and done.worker_id == worker.pk
    assert log_text(done) == "via manage.py\n"


@pytest.mark.parametrize(
    "command",
    [
        "echo up; sleep 60",
        # Output when it is stopped: nothing the agent sends is accepted any more.
        "trap 'echo bye; exit 1' TERM; echo up; sleep 60 & wait",
    ],
)
def test_a_revoked_agent_stops_within_a_heartbeat_saying_why(service, agents, command):
    env = agent_env(HODEI_REGISTRATION_TOKEN=registration_token())
    proc = agents(start_agent(service, name="to-revoke", env=env))
    running = execution_enqueue(command=command)
    wait_for(lambda: "up" in log_text(running), timeout=15)
    worker = Worker.objects.get(name="to-revoke")
    assert credentials.worker_credential_revoke(worker=worker)
    revoked_at = time.monotonic()
    code = proc.wait(10)
    assert time.monotonic() - revoked_at < 3
    assert code == 3
    output = log_of(proc)
    assert "refused this agent" in output and "revoked by an operator" in output
    # Its command was stopped with it; the reaper retries the execution elsewhere.
    assert Execution.objects.get(pk=running.pk).status in (
        ExecutionStatus.RUNNING,
        ExecutionStatus.LOST,
    )


def test_the_credential_file_is_private_and_a_restart_reuses_it(service, agents, tmp_path):
    raw = registration_token(uses=1)
    path = tmp_path / "credential"
    args = ["--credential-file", str(path)]
    env = agent_env(HODEI_REGISTRATION_TOKEN=raw)
    first = agents(start_agent(service, name="kept", env=env, args=args))
    stop(first)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("hodei_wkr_")
    # The token is used up: only the kept credential lets it back in.
    second = agents(start_agent(service, name="kept", env=env, args=args))
    assert "registered as worker" in log_of(second)
    assert settled(execution_enqueue(command="echo again")).status == ExecutionStatus.SUCCEEDED
    stop(second)

    # A credential that was revoked meanwhile: it registers anew with a fresh token.
    credentials.worker_credential_revoke(worker=Worker.objects.get(name="kept"))
    stale = path.read_text()
    env = agent_env(HODEI_REGISTRATION_TOKEN=registration_token())
    third = agents(start_agent(service, name="kept", env=env, args=args))
    assert "registering anew" in log_of(third)
    assert path.read_text() != stale


def test_a_bad_token_is_refused_at_start_with_a_clear_message(service):
    env = agent_env(HODEI_REGISTRATION_TOKEN="hodei_reg_" + "x" * 43)
    proc = start_agent(service, name="nobody", env=env, wait=False)
    assert proc.wait(15) == 3
    assert "Invalid registration token" in log_of(proc)
    no_token = start_agent(service, name="nobody", env=agent_env(), wait=False)
    assert no_token.wait(15) == 2
    assert "no credential" in log_of(no_token)


# -- HTTPS with a private CA ---------------------------------------------------------------


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate it signed for 127.0.0.1: (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject, issuer, public_key, signer, *, ca: bool, san=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("Hodei test CA", "Hodei test CA", ca_key.public_key(), ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = build("127.0.0.1", "Hodei test CA", key.public_key(), ca_key, ca=False, san=san)
    pem = serialization.Encoding.PEM
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture(scope="module")
def https_service(child_env, tmp_path_factory):
    ca, cert, key = make_certificates(tmp_path_factory.mktemp("tls"))
    port = free_port()
    fd, log_name = tempfile.mkstemp(prefix="gunicorn-https-", suffix=".log")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "hodei.wsgi", "--bind", f"127.0.0.1:{port}"]
        + ["--workers", "1", "--threads", "8", "--no-control-socket"]
        + ["--certfile", str(cert), "--keyfile", str(key)],
        cwd=ROOT,
        env={**child_env, "HODEI_SERVICE": "workermanager"},
        stdout=fd,
        stderr=subprocess.STDOUT,
    )
    os.close(fd)
    base = f"https://127.0.0.1:{port}"

    def healthy():
        try:
            return requests.get(f"{base}/health", verify=str(ca), timeout=5).ok
        except requests.ConnectionError:
            return False

    try:
        wait_for(healthy, timeout=30, interval=0.1)
        yield base, ca
    finally:
        stop(proc)
        os.unlink(log_name)


def test_https_with_a_private_ca(https_service, agents):
    base, ca = https_service
    env = agent_env(HODEI_REGISTRATION_TOKEN=registration_token())
    # Without the CA the certificate cannot be verified: a clear refusal, no retry loop.
    unverified = start_agent(base, name="tls-agent", env=env, wait=False)
    assert unverified.wait(15) == 3
    assert "cannot verify the certificate" in log_of(unverified)
    assert "--ca-file" in log_of(unverified)

    proc = agents(start_agent(base, name="tls-agent", env=env, args=["--ca-file", str(ca)]))
    done = settled(execution_enqueue(command="echo over tls"))
    assert done.status == ExecutionStatus.SUCCEEDED, log_of(proc)
    assert done.worker.name == "tls-agent" and log_text(done) == "over tls\n"


# -- network faults --------------------------------------------------------------------------


class Proxy:
    """A TCP proxy between an agent and the worker manager that the test can cut (every
    connection reset, new ones closed at once) and restore."""

    def __init__(self, target: str):
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.is_cut = False
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.is_cut:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.is_cut = True
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets.clear()

    def restore(self):
        self.is_cut = False

    def close(self):
        self.cut()
        self.server.close()


@pytest.fixture(scope="module")
def patient_service(child_env):
    """A worker manager whose liveness window (0.5 s x 20 = 10 s) outlasts a short cut."""
    env = {**child_env, "HODEI_MISSED_HEARTBEATS": "20"}
    proc, base = start_service(env, "workermanager", args=("--threads", "8"))
    yield base
    stop(proc)


def test_a_short_outage_loses_no_output_and_duplicates_none(patient_service, agents):
    proxy = Proxy(patient_service)
    try:
        env = agent_env(HODEI_REGISTRATION_TOKEN=registration_token())
        proc = agents(start_agent(proxy.url, name="flaky", env=env))
        lines = 40
        execution = execution_enqueue(
            command=f"for i in $(seq 1 {lines}); do echo line $i; sleep 0.1; done"
        )
        wait_for(lambda: "line 3\n" in log_text(execution), timeout=15)
        proxy.cut()
        time.sleep(2.0)  # the command goes on; its output is kept
        assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.RUNNING
        proxy.restore()
        done = settled(execution)
        assert done.status == ExecutionStatus.SUCCEEDED, log_of(proc)
        assert log_text(done) == "".join(f"line {i}\n" for i in range(1, lines + 1))
        assert "control plane unreachable" in log_of(proc)
    finally:
        proxy.close()


def test_output_kept_during_an_outage_is_bounded_with_the_truncation_line(patient_service, agents):
    proxy = Proxy(patient_service)
    try:
        env = agent_env(HODEI_REGISTRATION_TOKEN=registration_token(), HODEI_LOG_MAX_BYTES="4096")
        proc = agents(start_agent(proxy.url, name="chatty", env=env))
        execution = execution_enqueue(
            command="echo first; sleep 1; for i in $(seq 1 2000); do echo chatter $i; done; "
            "sleep 1; echo last"
        )
        wait_for(lambda: "first" in log_text(execution), timeout=15)
        proxy.cut()  # all of the chatter comes while the link is down
        time.sleep(3)
        proxy.restore()
        done = settled(execution)
        assert done.status == ExecutionStatus.SUCCEEDED, log_of(proc)
        text = log_text(done)
        assert len(text.encode()) < 4096 + 400
        assert "[hodei] output truncated: more than 4096 bytes" in text
        assert "chatter 1\n" in text and "last" not in text
        assert done.log_truncated and done.log_bytes > 20_000  # all counted, not all kept
    finally:
        proxy.close()


def test_an_outage_past_the_liveness_window_is_lost_retried_and_the_late_report_ignored(
    service, agents
):
    proxy = Proxy(service)
    try:
        env = agent_env(HODEI_REGISTRATION_TOKEN=registration_token())
        cut_off = agents(start_agent(proxy.url, name="cut-off", env=env))
        execution = execution_enqueue(command="echo begun; sleep 2; echo ended")
        wait_for(lambda: "begun" in log_text(execution), timeout=15)
        proxy.cut()
        # Another agent's heartbeats reap the silent one (0.5 s x 3) and run the retry.
        other = agents(start_agent(service, name="other", env=env))
        retry = wait_for(lambda: Execution.objects.filter(retry_of=execution).first(), timeout=15)
        assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.LOST
        assert settled(retry).status == ExecutionStatus.SUCCEEDED
        assert retry.attempt == 2 and Execution.objects.get(pk=retry.pk).worker.name == "other"
        time.sleep(1.0)  # the cut-off agent's command has ended meanwhile, unreported
        stop(other)
        proxy.restore()

        # Its late report changes nothing: the finish is ignored (or, if the control
        # plane's "stop" came first, nothing is reported), and there is no error loop.
        wait_for(
            lambda: (
                "ignored: it had been settled meanwhile" in log_of(cut_off)
                or "execution settled elsewhere" in log_of(cut_off)
            ),
            timeout=15,
        )
        assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.LOST
        # It comes back online and takes new work.
        wait_for(
            lambda: Worker.objects.get(name="cut-off").status == WorkerStatus.ONLINE, timeout=10
        )
        after = settled(execution_enqueue(command="echo back"))
        assert after.status == ExecutionStatus.SUCCEEDED and after.worker.name == "cut-off"
        assert "refused this agent" not in log_of(cut_off)
        assert cut_off.poll() is None
    finally:
        proxy.close()


def test_registration_waits_for_a_server_that_is_not_up_yet(child_env, agents):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = agent_env(HODEI_REGISTRATION_TOKEN=registration_token())
    proc = agents(start_agent(base, name="early", env=env, wait=False))
    wait_for(lambda: "cannot register yet" in log_of(proc), timeout=10)
    assert proc.poll() is None
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "hodei.wsgi", "--bind", f"127.0.0.1:{port}"]
        + ["--workers", "1", "--threads", "8", "--no-control-socket"],
        cwd=ROOT,
        env={**child_env, "HODEI_SERVICE": "workermanager"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: "registered as worker" in log_of(proc), timeout=40)
        assert Worker.objects.get(name="early").status == WorkerStatus.ONLINE
    finally:
        stop(proc)
        stop(server)
