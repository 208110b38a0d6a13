"""Spare shells (agent/spare.py): a bash started before its command runs that command as
a fresh ``bash -c`` would, and never outlives its agent. Real processes, no mocks; the
agent-level tests use the real database."""

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agent.process import NO_LIMITS, CommandProcess, agent_env, remove_kept_workdirs
from agent.sandbox import Limits, SandboxConfig, probe
from agent.spare import SpareShells
from tests.agent.conftest import drive, log_text
from tests.factories import JobFactory
from workermanager.choices import ExecutionStatus
from workermanager.services import execution_enqueue

NONE = SandboxConfig(isolation="none")
SANDBOX = SandboxConfig()
SANDBOX_PROBLEM = probe(SANDBOX)
needs_sandbox = pytest.mark.skipif(
    SANDBOX_PROBLEM is not None, reason=f"the sandbox cannot run here: {SANDBOX_PROBLEM}"
)
REPO = Path(__file__).resolve().parents[2]
BASH = shutil.which("bash", path=agent_env(NONE)["PATH"])  # as the agent finds it: $0

# What a command can see of the shell that runs it. `env` (sorted) and `declare -p` show
# every variable (no wrapper variable may be left), /proc/$$/fd the open files (read by
# bash itself, with no pipe of a pipeline open meanwhile).
PROBE = r"""echo "_=$_ seconds=$SECONDS"
env | sort
echo stdin-writable >&0 || echo "stdin is not writable"
echo "0=$0 -=$- line=$LINENO shlvl=$SHLVL pwd=$PWD here=$(pwd) ppid_is_agent=$((PPID == AGENT_PID))"
echo "exec=$BASH_EXECUTION_STRING" | head -c 40; echo
compgen -v | grep -c ^__hodei
fds=(/proc/$$/fd/*); echo "${fds[@]##*/}"
echo "stdin=[$(cat)]"
printf '[%s]\n' "$A"
echo "to stderr" >&2
f() { echo "in f at $LINENO"; }; f
exit 3"""


@pytest.fixture
def root():
    path = tempfile.mkdtemp(prefix="hodei-test-spare-")
    os.chmod(path, 0o711)  # the sandbox user reaches its working directory through it
    yield path
    subprocess.run(["rm", "-rf", path], check=False)


def run(command, *, root, spares=None, env=None, type="bash", limits=NO_LIMITS, config=NONE, **kw):
    """Start ``command`` as the agent does, wait for it, and return (code, stdout, stderr)
    with its working directory written as WORKDIR."""
    env = {
        **agent_env(config),
        "HODEI_EXECUTION_ID": "e-1",
        "AGENT_PID": str(os.getpid()),
        **(env or {}),
    }
    process = CommandProcess(
        execution_id="e-1",
        command=command,
        type=type,
        env=env,
        workdir_root=root,
        config=config,
        limits=limits,
        spares=spares,
        **kw,
    )
    out, err = b"", b""
    try:
        select.select([process.pidfd], [], [], 10)
        code = process.poll()
        assert code is not None, "the command did not end in 10 s"
        for pipe in (process.popen.stdout, process.popen.stderr):
            os.set_blocking(pipe.fileno(), True)
        out, err = process.popen.stdout.read(), process.popen.stderr.read()
    finally:
        workdir = process.workdir
        process.close()
    return code, *(text.decode().replace(workdir, "WORKDIR") for text in (out, err))


def spares_of(root, count=1, config=NONE):
    spares = SpareShells(count=count, workdir_root=root, config=config)
    assert spares.fill(room=count) == count
    return spares


def test_a_spare_runs_a_command_as_a_fresh_bash_would(root):
    spares = spares_of(root)
    time.sleep(1.1)  # a spare waits: its $SECONDS still starts from 0
    env = {"A": "it's\na value", "TOKEN": "s3cr3t"}
    warm = run(PROBE + "\n", root=root, spares=spares, env=env)
    cold = run(PROBE + "\n", root=root, env=env)
    assert spares.spares == []  # the spare ran it
    assert warm == cold
    code, out, err = warm
    assert code == 3
    assert err == "to stderr\n"
    assert "[it's\na value]\n" in out and "TOKEN=s3cr3t\n" in out
    assert "HODEI_OUTPUT=WORKDIR/.hodei-output\n" in out
    assert out.startswith(f"_={BASH} seconds=0\n")
    assert f"0={BASH} -=hBc line=4 shlvl=1 pwd=WORKDIR here=WORKDIR ppid_is_agent=1" in out
    assert 'exec=echo "_=$_ seconds=$SECONDS"\n' in out
    assert "\n0\n0 1 2 3\nstdin=[]\n[it's\na value]\nin f at 11\n" in out


@needs_sandbox
def test_a_sandboxed_spare_runs_a_command_as_a_fresh_sandbox_would(root):
    """The spare waits in the run's sandbox (bubblewrap, as configured)."""
    spares = spares_of(root, config=SANDBOX)
    env = {"A": "it's\na value", "HOME": "/ignored", "TMPDIR": "/also/ignored"}
    probe = PROBE + "\nid -u; ls -A /tmp | wc -l\n"
    warm = run(probe, root=root, spares=spares, env=env, config=SANDBOX)
    cold = run(probe, root=root, env=env, config=SANDBOX)
    assert spares.spares == []  # the spare ran it
    assert warm == cold
    code, out, err = warm
    assert (code, err) == (3, "to stderr\n")
    assert "HODEI_OUTPUT=/workspace/.hodei-output\nHOME=/workspace\n" in out
    assert "TMPDIR=/tmp\n" in out and "pwd=/workspace here=/workspace" in out


@needs_sandbox
def test_a_sandboxed_run_without_the_network_gets_a_fresh_sandbox(root):
    spares = spares_of(root, config=SANDBOX)
    command = "cat /proc/net/dev | wc -l"
    warm = run(command, root=root, spares=spares, config=SANDBOX, network=False)
    assert len(spares.spares) == 1  # not this run's: the spare's sandbox has the network
    assert warm == run(command, root=root, config=SANDBOX, network=False)
    assert warm != run(command, root=root, spares=spares, config=SANDBOX)
    assert spares.spares == []  # that one it ran


def test_a_command_that_is_no_valid_utf_8_runs_as_under_bash_c(root):
    """Popen passes such a command on as bytes (os.fsencode): so does a spare."""
    command = "printf %s '\udcff' | od -An -tx1"
    spares = spares_of(root)
    assert run(command, root=root, spares=spares) == run(command, root=root) == (0, " ff\n", "")
    assert spares.spares == []


def test_a_program_that_handles_sigterm_gets_its_grace_period(root):
    """bash -c execs the last command, so SIGTERM reaches the program alone; a spare
    waits for it and then dies of the same signal (agent/spare.py's docstring)."""
    command = (
        "python3 -c 'import os, signal, sys, time\n"
        'def bye(*_): time.sleep(0.3); os.write(1, b"cleaned up\\n"); sys.exit(7)\n'
        'signal.signal(signal.SIGTERM, bye); print("ready", flush=True); time.sleep(30)\''
    )
    results = {}
    for name, spares in (("spare", spares_of(root)), ("fresh", None)):
        process = CommandProcess(
            execution_id="e-1",
            command=command,
            type="bash",
            env=agent_env(NONE),
            workdir_root=root,
            config=NONE,
            spares=spares,
        )
        os.set_blocking(process.popen.stdout.fileno(), True)
        assert process.popen.stdout.readline() == b"ready\n"
        started = time.monotonic()
        process.terminate()
        select.select([process.pidfd], [], [], 10)
        results[name] = (process.poll(), process.popen.stdout.read(), time.monotonic() - started)
        print(name, results[name], process.popen.stderr.read())
        process.close()
    assert results["fresh"][:2] == (7, b"cleaned up\n")
    assert results["spare"][:2] == (143, b"cleaned up\n")
    assert results["spare"][2] >= 0.3


def test_its_syntax_errors_name_eval_where_bash_c_names_c(root):
    """The one difference a command can see (agent/spare.py's docstring)."""
    command = "echo first\nif"
    code, out, err = run(command, root=root, spares=spares_of(root))
    assert (code, out) == run(command, root=root)[:2] == (2, "first\n")
    assert err == f"{BASH}: eval: line 3: syntax error: unexpected end of file\n"


@pytest.mark.parametrize(
    ("case", "given"),
    [
        ("a variable bash reads at its start", {"env": {"BASH_ENV": "/nonexistent"}}),
        ("a variable bash manages", {"env": {"IFS": ","}}),
        ("a change to what the agent gives every command", {"env": {"PATH": "/usr/bin:/bin"}}),
        ("a name that is no shell identifier", {"env": {"MY-VAR": "1"}}),
        ("sh", {"type": "sh"}),
        ("resource limits", {"limits": Limits(pids_limit=100)}),
    ],
)
def test_a_run_a_spare_cannot_run_as_bash_c_would_gets_a_fresh_shell(root, case, given):
    spares = spares_of(root)
    command = (
        'echo "[$IFS]" | od -c | head -1; env | grep -e BASH_ENV -e MY-VAR -e IFS=,; echo done'
    )
    warm = run(command, root=root, spares=spares, **given)
    assert len(spares.spares) == 1, f"{case}: the spare was used"
    assert warm == run(command, root=root, **given)
    assert warm[0] == 0 and warm[1].endswith("done\n")
    spares.close()


def test_a_spare_that_died_is_replaced_by_a_fresh_shell(root):
    spares = spares_of(root)
    spare = spares.spares[0]
    os.kill(spare.popen.pid, signal.SIGKILL)
    spare.popen.wait()
    assert run("echo ran", root=root, spares=spares) == (0, "ran\n", "")
    assert spares.spares == []  # discarded, not kept
    assert spares.fill(room=1) == 1  # and another one started


def test_close_stops_the_spares_and_gives_back_their_working_directories(root):
    spares = spares_of(root, count=2)
    pids = [spare.popen.pid for spare in spares.spares]
    assert len(os.listdir(root)) == 2
    spares.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    remove_kept_workdirs()  # as the agent's shutdown does next
    assert os.listdir(root) == []


def test_fill_keeps_no_more_than_count_nor_the_free_slots(root):
    spares = SpareShells(count=2, workdir_root=root, config=NONE)
    assert spares.fill(room=1) == 1
    assert spares.fill(room=4) == 1
    assert spares.fill(room=4) == 0
    spares.close()


@pytest.mark.parametrize("isolation", ["none", pytest.param("sandbox", marks=needs_sandbox)])
def test_a_spare_exits_when_its_agent_is_killed(root, isolation):
    """Its stdin (the go pipe) ends with the agent: it exits without running anything (a
    sandboxed one is also killed with it: bwrap --die-with-parent)."""
    script = (
        "import os, sys, time\n"
        "from agent.sandbox import SandboxConfig\n"
        "from agent.spare import SpareShells\n"
        f"config = SandboxConfig(isolation={isolation!r})\n"
        f"spares = SpareShells(count=1, workdir_root={root!r}, config=config)\n"
        "spares.fill(room=1)\n"
        "print(spares.spares[0].popen.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    agent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE)
    spare_pid = int(agent.stdout.readline())
    os.kill(agent.pid, signal.SIGKILL)
    agent.wait()
    deadline = time.monotonic() + 5
    while _alive(spare_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(spare_pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_an_agent_without_isolation_runs_bash_in_its_spare_and_starts_the_next(
    make_agent, workdir_root
):
    agent = make_agent(isolation="none", concurrency=1)
    agent.step(timeout=0)
    [spare] = agent.spares.spares
    job = JobFactory(
        command='echo "$$ $A $TOKEN"', env={"A": "a"}, secret_env={"TOKEN": "s3cr3t-value"}
    )
    execution = drive(agent, execution_enqueue(job=job))
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert log_text(execution) == f"{spare.popen.pid} a ********\n"
    agent.step(timeout=0)
    [next_spare] = agent.spares.spares
    assert next_spare is not spare and _alive(next_spare.popen.pid)
    agent.shutdown()
    assert not _alive(next_spare.popen.pid)
    assert os.listdir(workdir_root) == []


def test_an_agent_with_no_spare_shells_keeps_none(make_agent):
    agent = make_agent(isolation="none", spare_shells=0)
    drive(agent, execution_enqueue(command="true"))
    assert agent.spares.spares == []
