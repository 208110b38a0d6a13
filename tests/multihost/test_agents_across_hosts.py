"""HTTP agents on two real network hosts (Linux network namespaces, see conftest.py)
against a control plane they reach over a bridge: registration with a token, the limits
of a worker credential, revocation, a cable cut mid-run, and exactly-once execution of
many runs spread over both hosts."""

import json
import signal
import subprocess
import time
from collections import Counter

import pytest

from tests.conftest import ISOLATION
from tests.multihost.conftest import (
    VENV_BIN,
    Host,
    cmdline_of,
    environ_of,
    log_of,
    settle_all,
)
from tests.processes import processes_running, sleep_marker, stop, wait_for
from workermanager import credentials
from workermanager.choices import ExecutionStatus, WorkerStatus
from workermanager.models import Execution, RegistrationToken, Worker
from workermanager.services import execution_enqueue

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

API = "/api/v1/agent"
SECRETS = ("DATABASE_URL", "SECRET_KEY", "HODEI_SECRETS_KEY", "DJANGO_SETTINGS_MODULE")


def registration_token(**options) -> str:
    return credentials.registration_token_create(**options)[1]


def record(ledger) -> str:
    """A command's first words: tell the ledger what runs where (one line)."""
    return f"echo ran:$HODEI_EXECUTION_ID:$HODEI_ATTEMPT:$HOSTNAME > {ledger.address}"


def ran(ledger) -> Counter:
    """(execution id, attempt, host) -> how many times the ledger says it ran."""
    entries = (line.split(":") for line in ledger.lines() if line.startswith("ran:"))
    return Counter(tuple(parts[1:]) for parts in entries)


def call(host: Host, url: str, *, token: str, body: dict | None = None, method: str = "POST"):
    """A raw HTTP request made on ``host`` (curl, in its namespace): (status, JSON body).
    The token travels on stdin, not on a command line."""
    argv = ["curl", "-s", "-m", "10", "-X", method, "-H", "@-", "-w", "\n%{http_code}", url]
    if body is not None:
        argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    done = host.run(*argv, input=f"Authorization: Bearer {token}\n")
    assert done.returncode == 0, done.stderr
    text, _, code = done.stdout.rpartition("\n")
    return int(code), (json.loads(text) if text.strip() else {})


def settled(execution, timeout: float = 20.0) -> Execution:
    return settle_all([execution.pk], timeout=timeout)[0]


def log_text(execution) -> str:
    return "".join(execution.logs.order_by("seq").values_list("message", flat=True))


def test_two_hosts_register_with_one_token_and_run_work(network, host_agents, ledger):
    raw = registration_token(worker_type="default", uses=2)
    a, b = (host_agents(host, token=raw) for host in network.hosts.values())
    for proc in (a, b):
        # The agent itself (every launcher step exec'd it), holding the URL and the
        # token only (and PATH, and the PWD sh exports): no database, no secret key, no
        # settings.
        assert "hodei-agent" in cmdline_of(proc.pid)
        environ = environ_of(proc.pid)
        assert set(environ) - {"PWD"} == {"PATH", "HODEI_SERVER_URL", "HODEI_REGISTRATION_TOKEN"}
        assert not set(SECRETS) & set(environ)
    # Their names default to their hosts' names; the token is used up.
    workers = {w.name: w for w in Worker.objects.all()}
    assert set(workers) == {"host-a", "host-b"}
    assert all(w.status == WorkerStatus.ONLINE and w.hostname == n for n, w in workers.items())
    assert RegistrationToken.objects.get().uses_left == 0
    third = host_agents(network.hosts["a"], token=raw, name="third", wait=False)
    assert third.wait(15) == 3
    assert "has no registrations left" in log_of(third)

    executions = [
        execution_enqueue(command=f"{record(ledger)}; sleep 0.3; echo done") for _ in range(12)
    ]
    rows = settle_all([e.pk for e in executions], timeout=30)
    assert {r.status for r in rows} == {ExecutionStatus.SUCCEEDED}, [r.error for r in rows]
    assert all(log_text(r) == "done\n" for r in rows)
    # Each ran once, on the host the control plane says ran it, and both hosts worked.
    runs = ran(ledger)
    assert sorted(runs.values()) == [1] * 12
    assert {(str(r.pk), "1", r.worker.name) for r in rows} == set(runs)
    assert {host for _, _, host in runs} == {"host-a", "host-b"}


def test_a_credential_cannot_touch_another_hosts_execution(network, host_agents, control_plane):
    host_a, host_b = network.hosts["a"], network.hosts["b"]
    # Host A registers by hand, over the raw API, as any program with the token could.
    status, body = call(
        host_a,
        f"{control_plane.url}{API}/register",
        token=registration_token(),
        body={"type": "default", "name": "by-hand-a", "capacity": 1},
    )
    assert status == 201, body
    credential_a = body["credential"]
    host_agents(host_b, token=registration_token(), name="host-b")
    theirs = execution_enqueue(command="echo on b; sleep 2; echo still b")
    wait_for(lambda: "on b" in log_text(theirs), timeout=15)
    assert Execution.objects.get(pk=theirs.pk).worker.name == "host-b"

    finish = f"{control_plane.url}{API}/executions/{theirs.pk}/finish"
    status, body = call(host_a, finish, token=credential_a, body={"status": "failed"})
    assert status == 403, body
    assert body["detail"] == f"Execution {theirs.pk} is not this worker's."
    chunk = {"execution_id": str(theirs.pk), "seq": 99, "stream": "stdout"}
    chunk.update(message="forged\n", created_at=time.time())
    logs = f"{control_plane.url}{API}/logs"
    status, body = call(host_a, logs, token=credential_a, body={"chunks": [chunk]})
    assert status == 403, body
    # Reading it: the credential is no key to the normal API at all (401, not 403).
    for path in (f"/api/v1/executions/{theirs.pk}/logs", f"/api/v1/executions/{theirs.pk}"):
        status, body = call(host_a, control_plane.url + path, token=credential_a, method="GET")
        assert status == 401, (path, body)

    done = settled(theirs)
    assert done.status == ExecutionStatus.SUCCEEDED and done.worker.name == "host-b"
    assert log_text(done) == "on b\nstill b\n"


def test_a_revoked_agent_stops_within_a_heartbeat_saying_why(
    network, host_agents, control_plane, tmp_path
):
    host_a = network.hosts["a"]
    kept = tmp_path / "credential"
    proc = host_agents(
        host_a, token=registration_token(), name="host-a", args=["--credential-file", str(kept)]
    )
    marker = sleep_marker()
    running = execution_enqueue(command=f"echo up; sleep {marker}")
    wait_for(lambda: "up" in log_text(running), timeout=15)
    assert processes_running(marker)

    assert credentials.worker_credential_revoke(worker=Worker.objects.get(name="host-a"))
    revoked_at = time.monotonic()
    assert proc.wait(10) == 3, log_of(proc)
    assert time.monotonic() - revoked_at < 3  # heartbeats and control: every 0.5 s
    assert "stopped: the control plane refused this agent" in log_of(proc)
    assert "revoked by an operator" in log_of(proc)
    assert not processes_running(marker)  # its command went with it
    # The credential it kept is refused at the door, for the same stated reason.
    status, body = call(
        host_a, f"{control_plane.url}{API}/heartbeat", token=kept.read_text().strip(), body={}
    )
    assert status == 401 and "revoked by an operator" in body["detail"]


def test_a_cut_cable_loses_the_run_which_succeeds_on_the_other_host(network, host_agents, ledger):
    host_a, host_b = network.hosts["a"], network.hosts["b"]
    token = registration_token()
    a = host_agents(host_a, token=token, name="host-a")
    execution = execution_enqueue(
        command=f"{record(ledger)}; echo begun on $HOSTNAME; sleep 3; echo ended on $HOSTNAME"
    )
    wait_for(lambda: "begun on host-a" in log_text(execution), timeout=15)

    network.cut(host_a)
    cut_at = time.monotonic()
    # Host B's agent heartbeats every 0.5 s; its heartbeats reap the silent host A
    # after 4 missed ones, and it takes the retry.
    b = host_agents(host_b, token=token, name="host-b")
    retry = wait_for(lambda: Execution.objects.filter(retry_of=execution).first(), timeout=15)
    lost = Execution.objects.get(pk=execution.pk)
    assert lost.status == ExecutionStatus.LOST, lost.status
    assert "host-a stopped heartbeating" in lost.error
    assert time.monotonic() - cut_at < 10  # B's start, 2 s of silence, a heartbeat
    done = settled(retry)
    assert done.status == ExecutionStatus.SUCCEEDED and done.worker.name == "host-b"
    assert done.attempt == 2 and log_text(done) == "begun on host-b\nended on host-b\n"

    # Host A's command ends meanwhile, unheard; then its cable is plugged in again.
    time.sleep(max(0.0, cut_at + 4 - time.monotonic()))
    stop(b)
    network.restore(host_a)
    restored_at = time.monotonic()
    # Its late report changes nothing: the finish is ignored (or, when the control
    # plane's "stop" comes first, not sent).
    wait_for(
        lambda: (
            "ignored: it had been settled meanwhile" in log_of(a)
            or "execution settled elsewhere" in log_of(a)
        ),
        timeout=45,
    )
    assert time.monotonic() - restored_at < 20
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.LOST
    assert Execution.objects.get(pk=retry.pk).status == ExecutionStatus.SUCCEEDED
    # The ledger: attempt 1 ran on host A, attempt 2 on host B, once each.
    assert ran(ledger) == {
        (str(execution.pk), "1", "host-a"): 1,
        (str(retry.pk), "2", "host-b"): 1,
    }
    # Host A is back: online again, and it takes new work.
    wait_for(lambda: Worker.objects.get(name="host-a").status == WorkerStatus.ONLINE, timeout=30)
    after = settled(execution_enqueue(command="echo back on $HOSTNAME"), timeout=60)
    assert after.status == ExecutionStatus.SUCCEEDED and log_text(after) == "back on host-a\n"
    assert a.poll() is None and "refused this agent" not in log_of(a)


def test_a_cut_off_host_still_times_out_its_commands_and_stops_on_sigterm(network, host_agents):
    """Its loop fails at the first request of every step while the cable is out: the
    agent's own duties must not wait for the control plane. (Before the fix in
    Agent.run, a 2 s timeout was still not applied 40 s into a cut, and SIGTERM was
    ignored until the cable came back.)"""
    host_a = network.hosts["a"]
    a = host_agents(host_a, token=registration_token(), name="host-a", concurrency=2)
    timed, untimed = sleep_marker(), sleep_marker()
    first = execution_enqueue(command=f"echo timed; sleep {timed}", timeout_seconds=2)
    second = execution_enqueue(command=f"echo untimed; sleep {untimed}")
    wait_for(lambda: log_text(first) and log_text(second), timeout=15)

    network.cut(host_a)
    # The first request after the cut waits for its 15 s timeout (packets are dropped,
    # nothing refuses them); the 2 s timeout is applied as soon as the loop is back.
    wait_for(lambda: not processes_running(timed), timeout=30, interval=0.1)
    assert processes_running(untimed)

    # Stopped, it gives its command the grace (1 s), stops it, tries to report (each
    # attempt fails, after a few seconds at most) and exits.
    a.send_signal(signal.SIGTERM)
    assert a.wait(40) == 0, log_of(a)
    assert not processes_running(untimed)
    assert "while stopping" in log_of(a)  # it tried to report, and did not insist


def test_500_executions_over_both_hosts_each_run_exactly_once(network, host_agents, ledger):
    token = registration_token(uses=2)
    for host in network.hosts.values():
        host_agents(host, token=token, concurrency=8)
    started_at = time.monotonic()
    ids = [execution_enqueue(command=record(ledger)).pk for _ in range(500)]
    rows = settle_all(ids, timeout=90)
    elapsed = time.monotonic() - started_at
    statuses = Counter(r.status for r in rows)
    assert statuses == {ExecutionStatus.SUCCEEDED: 500}, statuses
    runs = ran(ledger)
    assert len(runs) == 500 and set(runs.values()) == {1}, runs.most_common(3)
    assert {(str(r.pk), "1", r.worker.name) for r in rows} == set(runs)
    per_host = Counter(host for _, _, host in runs)
    assert set(per_host) == {"host-a", "host-b"}, per_host
    print(f"500 executions in {elapsed:.1f} s: {dict(per_host)}")


def test_the_readmes_two_commands_add_an_agent_on_another_host(
    network, control_plane, child_env, tmp_path
):
    """README, "An agent on another machine, in two commands", verbatim but for the
    token and the URL."""
    made = subprocess.run(
        [str(VENV_BIN / "hodei"), "createregistrationtoken", "--type", "default"]
        + ["--uses", "1", "--expires", "7d"],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("hodei_reg_") and "\n" not in token
    host_b = network.hosts["b"]
    shell = (
        f"HODEI_REGISTRATION_TOKEN={token} hodei-agent --server {control_plane.url} --type default"
    )
    if ISOLATION != "sandbox":
        shell += f" --isolation {ISOLATION}"  # tests.conftest.SANDBOX_PROBLEM says why
    with open(tmp_path / "agent.log", "wb") as output:
        proc = subprocess.Popen(
            host_b.argv("bash", "-c", shell),
            env={"PATH": f"{VENV_BIN}:/usr/bin:/bin"},  # hodei-agent on PATH, as installed
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        worker = wait_for(lambda: Worker.objects.filter(name="host-b").first(), timeout=20)
        # bash exec'd it: the process stop() signals is the agent's.
        assert "hodei-agent" in cmdline_of(proc.pid)
        assert worker.status == WorkerStatus.ONLINE
        done = settled(execution_enqueue(command="echo hello from $HOSTNAME"))
        assert done.status == ExecutionStatus.SUCCEEDED and log_text(done) == "hello from host-b\n"
    finally:
        stop(proc)
