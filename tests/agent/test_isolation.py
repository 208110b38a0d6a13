"""A hostile job author's payloads, run by a real agent in sandbox mode, each ending the
safe way: a job sees and affects only its own processes and files (issue: every command
in its own sandbox). The agent here is the test process itself, driven step by step, so
"the agent's environment" is this process's; the kill -9 of the agent is a real
`runworker` process."""

import os
import signal
import socket

import pytest

from tests.agent.conftest import drive, log_text, worker_of
from tests.conftest import ISOLATION, SANDBOX_PROBLEM
from tests.factories import JobFactory
from tests.processes import ROOT, processes_running, sleep_marker, start_agent, wait_for
from workermanager.choices import ExecutionStatus
from workermanager.models import Execution
from workermanager.services import execution_cancel, execution_enqueue

S = ExecutionStatus
CANARY = "agent-secret-canary-7f3a9c"

pytestmark = pytest.mark.skipif(
    ISOLATION != "sandbox", reason=f"the sandbox cannot run here: {SANDBOX_PROBLEM}"
)


@pytest.fixture
def agent(make_agent, monkeypatch):
    # Secrets in the agent's own environment, as a real agent holds DATABASE_URL and
    # SECRET_KEY: no command may learn them.
    monkeypatch.setenv("SECRET_KEY", CANARY)
    monkeypatch.setenv("HODEI_AGENT_TOKEN", CANARY)
    return make_agent(concurrency=4, kill_grace_seconds=1.0)


def run(agent, command: str, **kwargs) -> Execution:
    return drive(agent, execution_enqueue(command=command, **kwargs), timeout=20)


def test_the_agents_environment_and_other_processes_cannot_be_read(agent):
    execution = run(
        agent,
        "tr '\\0' '\\n' </proc/$PPID/environ; for f in /proc/[0-9]*/environ; do "
        "tr '\\0' '\\n' < $f; done; ls /proc | grep -c '^[0-9]'; env",
    )
    text = log_text(execution)
    assert CANARY not in text
    assert "DATABASE_URL" not in text
    # Its own processes only: bwrap's init, the shell, and what the shell runs.
    counts = [int(line) for line in text.splitlines() if line.isdigit()]
    assert counts and counts[0] <= 5, text


def test_the_checkout_var_and_credentials_are_invisible_and_the_system_read_only(agent):
    execution = run(
        agent,
        f"ls {ROOT} 2>&1; cat {ROOT}/var/admin-credentials 2>&1; "
        f"touch {ROOT}/hodei/settings.py 2>&1; touch /usr/evil 2>&1; touch /etc/evil 2>&1; "
        "echo written > ./mine && cat ./mine; echo tmp > /tmp/t && cat /tmp/t",
    )
    text = log_text(execution)
    assert "No such file or directory" in text
    assert "password=" not in text and "settings.py" not in text.replace(
        f"{ROOT}/hodei/settings.py", ""
    )
    assert "Read-only file system" in text
    assert not os.path.exists("/usr/evil") and not os.path.exists("/etc/evil")
    assert "written" in text and "tmp" in text  # its own directory and /tmp are writable


def test_commands_run_as_an_unprivileged_user_never_root_or_the_agents(agent):
    execution = run(agent, "id -u; id -g; cat /proc/self/status | grep -E '^(Cap(Eff|Prm)):'")
    uid, gid, *caps = log_text(execution).split("\n")
    assert uid == "65534" and gid == "65534"
    assert uid != str(os.getuid())
    assert all(line.split()[-1] == "0000000000000000" for line in caps if line)


def test_a_job_cannot_kill_another_execution(agent):
    victim = execution_enqueue(command="sleep 3; echo ok")
    drive(agent, victim, until=lambda e: e.status == S.RUNNING)
    attacker = run(
        agent,
        "for d in /proc/[0-9]*; do "
        "  if tr '\\0' '\\n' < $d/environ 2>/dev/null | grep -q HODEI_EXECUTION_ID; then "
        "    pid=${d#/proc/}; [ $pid != $$ ] && kill -9 -$pid 2>&1; kill -9 $pid 2>&1; "
        "  fi; "
        "done; pkill -9 sleep; kill -9 -1; echo attacked",
    )
    assert attacker.status in (S.SUCCEEDED, S.FAILED)
    victim = drive(agent, victim, timeout=20)
    assert victim.status == S.SUCCEEDED, (victim.error, log_text(victim))
    assert log_text(victim) == "ok\n"


def test_kill_of_the_parent_leaves_the_agent_running_and_the_run_settled(agent):
    execution = run(agent, "kill -9 $PPID; kill -9 1; echo still here")
    assert execution.status in (S.SUCCEEDED, S.FAILED)
    assert execution.status != S.LOST
    # The agent (this process) goes on: it takes and finishes the next execution.
    assert run(agent, "echo next").status == S.SUCCEEDED


def test_nothing_survives_a_timeout_of_a_daemonised_command(agent):
    marker = sleep_marker()
    execution = run(
        agent,
        f"setsid sleep {marker} >/dev/null 2>&1 </dev/null & sleep 30",
        timeout_seconds=2,
    )
    assert execution.status == S.TIMED_OUT
    assert processes_running(marker) == []


def test_nothing_survives_a_cancel_of_a_daemonised_command(agent):
    marker = sleep_marker()
    execution = execution_enqueue(
        command=f"setsid sleep {marker} >/dev/null 2>&1 </dev/null & sleep 30"
    )
    drive(agent, execution, until=lambda e: e.status == S.RUNNING and processes_running(marker))
    execution_cancel(execution=execution)
    assert drive(agent, execution, timeout=10).status == S.CANCELLED
    assert processes_running(marker) == []


def test_nothing_survives_a_command_that_ends_leaving_a_daemon(agent):
    marker = sleep_marker()
    execution = run(agent, f"setsid sleep {marker} >/dev/null 2>&1 </dev/null & echo bye")
    assert execution.status == S.SUCCEEDED
    assert processes_running(marker) == []


def test_a_memory_hog_is_ended_failed_by_its_limit(agent):
    job = JobFactory(
        command="python3 -c 'x = bytearray(512 * 1024 * 1024); print(len(x))'",
        memory_limit_mb=64,
    )
    execution = drive(agent, execution_enqueue(job=job), timeout=30)
    assert execution.status == S.FAILED
    assert "memory limit (64 MiB)" in execution.error
    assert "exceeded its memory limit" in log_text(execution)


def test_a_fork_bomb_stays_under_its_process_limit(agent):
    job = JobFactory(
        command="for i in $(seq 60); do sleep 5 & done 2>&1 | grep -m1 -o 'fork.*'; "
        "echo started; kill $(jobs -p) 2>/dev/null; true",
        pids_limit=20,
        timeout_seconds=20,
    )
    execution = drive(agent, execution_enqueue(job=job), timeout=30)
    assert "fork" in log_text(execution), log_text(execution)


def test_network_none_has_no_network(agent):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        probe = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "    print('connected')\n"
            "except OSError as e:\n"
            "    print('refused', e)\n"
        )
        closed = JobFactory(command=probe, type="python", network="none")
        isolated = drive(agent, execution_enqueue(job=closed), timeout=20)
        assert log_text(isolated).startswith("refused"), log_text(isolated)
        # By default the network is the host's, as documented.
        opened = JobFactory(command=probe, type="python")
        assert log_text(drive(agent, execution_enqueue(job=opened), timeout=20)) == "connected\n"


def test_the_agent_registers_its_isolation(agent):
    assert worker_of(agent).isolation == "sandbox"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_nothing_survives_a_kill_9_of_the_agent(child_env):
    marker = sleep_marker()
    proc = start_agent({**child_env, "HODEI_ISOLATION": "sandbox"}, name="doomed-agent")
    try:
        execution = execution_enqueue(
            command=f"setsid sleep {marker} >/dev/null 2>&1 </dev/null & sleep {marker}"
        )
        wait_for(lambda: len(processes_running(marker)) >= 2, timeout=15)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_for(lambda: processes_running(marker) == [], timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert Execution.objects.get(pk=execution.pk).status == S.RUNNING  # until reaped


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_real_agent_survives_kill_9_of_its_parent(child_env):
    proc = start_agent({**child_env, "HODEI_ISOLATION": "sandbox"}, name="tough-agent")
    try:
        execution = execution_enqueue(command="kill -9 $PPID; kill -9 1; echo still here")
        wait_for(lambda: Execution.objects.get(pk=execution.pk).status in (S.SUCCEEDED, S.FAILED))
        assert proc.poll() is None
        again = execution_enqueue(command="echo next")
        wait_for(lambda: Execution.objects.get(pk=again.pk).status == S.SUCCEEDED)
    finally:
        proc.terminate()
        proc.wait(15)
