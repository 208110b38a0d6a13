"""The job sandbox (agent/sandbox.py) against real processes: each hostile payload is run
and the safe outcome asserted, including from the host's process table.

No database. Sandbox tests skip (with the probe's reason) where bwrap cannot run."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from agent import sandbox
from agent.process import popen
from agent.sandbox import Limits, SandboxConfig, SandboxError, prepare, probe

CONFIG = SandboxConfig()
NONE = SandboxConfig(isolation="none")
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
PY = ("python3", "-c")
REPO = Path(__file__).resolve().parents[2]


class Run:
    """One command started the way the agent starts it."""

    def __init__(self, command, *, interpreter=("bash", "-c"), config=CONFIG, env=ENV, **kw):
        self.workdir = tempfile.mkdtemp(prefix="hodei-test-run-")
        self.prepared = prepare(
            config,
            execution_id=f"test-{uuid.uuid4().hex[:12]}",
            argv=[*interpreter, command],
            env=env,
            workdir=self.workdir,
            **kw,
        )
        self.popen = popen(self.prepared, stdin=subprocess.DEVNULL)
        self.prepared.attach(self.popen.pid)

    def finish(self, timeout: float = 10) -> tuple[int, str, str]:
        out, err = self.popen.communicate(timeout=timeout)
        code = self.popen.returncode
        # As the agent computes it: a signal becomes 128 + signal.
        return (code if code >= 0 else 128 - code), out.decode(), err.decode()

    def wait_line(self) -> str:
        return self.popen.stdout.readline().decode()

    def close(self) -> None:
        self.prepared.kill()
        try:
            self.popen.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.prepared.cleanup()
        subprocess.run(["rm", "-rf", self.workdir], check=False)


@pytest.fixture
def run():
    runs = []

    def start(command, **kw) -> Run:
        runs.append(Run(command, **kw))
        return runs[-1]

    yield start
    for r in runs:
        r.close()


@pytest.fixture(scope="module")
def sandboxed():
    reason = probe(CONFIG)
    if reason is not None:
        pytest.skip(reason)


def needs_cgroup(limit: str, prepared) -> None:
    if not prepared.enforcement[limit].startswith("cgroup"):
        pytest.skip(f"{limit} is enforced by {prepared.enforcement[limit]} here, not a cgroup")


# --- host-side observation -----------------------------------------------------------------


def new_marker() -> str:
    """A unique sleep duration: `sleep <marker>` is findable in the host's process table."""
    return f"117{uuid.uuid4().int % 10**8:08d}"


def sleepers(marker: str) -> list[int]:
    """Host pids of live `sleep <marker>` processes."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.split(b"\0")[:2] == [b"sleep", marker.encode()]:
                found.append(int(name))
    return found


def wait_until(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


def assert_gone(marker: str) -> None:
    # The kernel kills a dead namespace's processes asynchronously: allow a moment.
    try:
        wait_until(lambda: not sleepers(marker), timeout=3)
    except AssertionError:
        pytest.fail(f"`sleep {marker}` survived: host pids {sleepers(marker)}")


def daemon(marker: str) -> str:
    """Shell text starting a daemonized sleep that escapes its process group."""
    return f"setsid sleep {marker} >/dev/null 2>&1 </dev/null &"


# --- probe and configuration ---------------------------------------------------------------


def test_probe_explains_a_missing_bwrap():
    reason = probe(SandboxConfig(bwrap="/nonexistent/bwrap"))
    assert "apt-get install bubblewrap" in reason
    assert "HODEI_ISOLATION=none" in reason


def test_root_is_never_the_sandbox_user(tmp_path):
    assert "root" in probe(SandboxConfig(uid=0))
    with pytest.raises(SandboxError):
        prepare(
            SandboxConfig(gid=0), execution_id="x", argv=["true"], env={}, workdir=str(tmp_path)
        )


def test_isolation_none_needs_nothing():
    assert probe(NONE) is None
    assert "unknown isolation" in probe(SandboxConfig(isolation="chroot"))


# --- basics --------------------------------------------------------------------------------


def test_output_and_exit_code_come_through_unchanged(sandboxed, run):
    r = run("echo out; echo err >&2; exit 7")
    assert r.finish() == (7, "out\n", "err\n")


@pytest.mark.parametrize(
    "interpreter, command",
    [
        (("bash", "-c"), "echo $((40 + 2))"),
        (("sh", "-c"), "echo 42"),
        (PY, "print(6 * 7)"),
    ],
)
def test_the_interpreters_work_inside(sandboxed, run, interpreter, command):
    assert run(command, interpreter=interpreter).finish() == (0, "42\n", "")


def test_the_command_runs_as_an_unprivileged_user(sandboxed, run):
    marker = new_marker()
    r = run(
        f"id -u; id -g; id -G; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; sleep {marker}"
    )
    # The host sees the same: the real uid of the command's processes is nobody.
    [pid] = wait_until(lambda: sleepers(marker))
    status = Path(f"/proc/{pid}/status").read_text()
    assert status.split("Uid:")[1].split("\n")[0].split() == ["65534"] * 4
    r.prepared.kill()
    code, out, _ = r.finish()
    assert out.split()[:3] == ["65534", "65534", "65534"]
    assert "CapEff:\t0000000000000000" in out and "NoNewPrivs:\t1" in out


def test_the_environment_is_exactly_the_one_passed(sandboxed, run, monkeypatch):
    monkeypatch.setenv("HODEI_TEST_AGENT_SECRET", "hunter2")
    env = {**ENV, "JOB_VAR": "x y", "TMPDIR": "/var/agent-tmp"}
    r = run(
        "import json, os; print(json.dumps(dict(os.environ)))",
        interpreter=PY,
        env=env,
    )
    code, out, _ = r.finish()
    # HOME and TMPDIR point to writable places inside; bwrap sets PWD; nothing else.
    assert json.loads(out) == {**env, "HOME": "/workspace", "TMPDIR": "/tmp", "PWD": "/workspace"}


# --- isolation -----------------------------------------------------------------------------


def test_only_its_own_processes_are_visible(sandboxed, run):
    script = f"""
import os
print(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
for path in ("/proc/{os.getpid()}/environ", "/proc/{os.getppid()}/environ"):
    print(os.path.exists(path))
try:
    os.kill({os.getpid()}, 0)
    print("can signal the agent")
except ProcessLookupError:
    print("agent not found")
"""
    code, out, _ = run(script, interpreter=PY).finish()
    # bwrap's init is pid 1, the command pid 2; host pids mean nothing inside.
    assert out.split("\n")[:4] == ["[1, 2]", "False", "False", "agent not found"]


def test_kill_minus_one_reaches_only_its_own_processes(sandboxed, run):
    marker = new_marker()
    other = run(f"sleep {marker}")
    wait_until(lambda: sleepers(marker))
    code, out, _ = run("kill -9 -1; echo still here").finish()
    assert out == "still here\n"
    assert sleepers(marker), "another execution was killed"
    assert other.popen.poll() is None


def test_the_filesystem_view(sandboxed, run):
    neighbour = tempfile.mkdtemp(prefix="hodei-test-neighbour-")
    try:
        Path(neighbour, "secret").write_text("s3cret")
        script = f"""
import json, os
result = {{"cwd": os.getcwd()}}
for path in ("/work", {str(REPO)!r}, "/root", "/home", "/var", "/srv", "/opt", "/mnt",
             {neighbour!r}, "/usr/bin/python3", "/etc/passwd"):
    result[path] = os.path.exists(path)
for path in ("/usr/hacked", "/etc/hacked", "/hacked"):
    try:
        open(path, "w")
        result[path] = "written"
    except OSError:
        result[path] = "refused"
with open("out.txt", "w") as f:
    f.write("hello")
with open("/tmp/private-{new_marker()}", "w") as f:
    f.write("x")
result["tmp"] = os.listdir("/tmp")
print(json.dumps(result))
"""
        r = run(script, interpreter=PY)
        code, out, err = r.finish()
        assert code == 0, err
        seen = json.loads(out)
        assert seen.pop("cwd") == "/workspace"
        assert seen.pop("/usr/bin/python3") and seen.pop("/etc/passwd")
        [private] = seen.pop("tmp")
        assert not Path("/tmp", private).exists()  # /tmp inside is its own
        assert seen == {
            "/work": False,
            str(REPO): False,
            "/root": False,
            "/home": False,
            "/var": False,
            "/srv": False,
            "/opt": False,
            "/mnt": False,
            neighbour: False,
            "/usr/hacked": "refused",
            "/etc/hacked": "refused",
            "/hacked": "refused",
        }
        assert Path(r.workdir, "out.txt").read_text() == "hello"
    finally:
        subprocess.run(["rm", "-rf", neighbour], check=False)


def test_no_file_descriptors_leak_in(sandboxed, run):
    code, out, _ = run(
        "import os; print(*sorted(os.listdir('/proc/self/fd')))", interpreter=PY
    ).finish()
    # 0-2 and the one listdir itself opened.
    assert out == "0 1 2 3\n"


def test_no_nested_user_namespaces(sandboxed, run):
    if "--disable-userns" not in sandbox._bwrap_help(sandbox._which(CONFIG.bwrap)):
        pytest.skip("this bwrap has no --disable-userns")
    code, _, _ = run("unshare --user --map-root-user true").finish()
    assert code != 0


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


@pytest.mark.parametrize("network, expected", [(True, "connected"), (False, "refused")])
def test_network_is_the_hosts_unless_disabled(sandboxed, run, listener, network, expected):
    # Our own listener is always there; PostgreSQL's 5432 is checked too when it runs here.
    ports = [listener]
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        ports.append(5432)
    except OSError:
        pass
    socket.create_connection(("127.0.0.1", listener), timeout=2).close()  # works outside
    script = f"""
import socket
for port in {ports}:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        print("connected")
    except OSError:
        print("refused")
"""
    r = run(script, interpreter=PY, network=network)
    assert r.finish()[1] == f"{expected}\n" * len(ports)


# --- nothing survives ----------------------------------------------------------------------


def test_a_daemon_dies_when_the_command_exits_normally(sandboxed, run):
    marker = new_marker()
    r = run(f"{daemon(marker)} until [ -e go ]; do sleep 0.01; done; exit 0")
    wait_until(lambda: sleepers(marker))
    Path(r.workdir, "go").touch()
    assert r.finish()[0] == 0
    assert_gone(marker)


def test_everything_dies_with_a_sigkill_of_the_top_process(sandboxed, run):
    marker = new_marker()
    r = run(f"{daemon(marker)} sleep {new_marker()}")
    wait_until(lambda: sleepers(marker))
    os.kill(r.popen.pid, signal.SIGKILL)
    assert r.finish()[0] == 137
    assert_gone(marker)


FAKE_AGENT = """
import subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from agent.sandbox import SandboxConfig, prepare
p = prepare(SandboxConfig(), execution_id="fake-agent", argv=["bash", "-c", sys.argv[2]],
            env={"PATH": "/usr/bin:/bin"}, workdir=sys.argv[3])
popen = subprocess.Popen(p.argv, cwd=p.cwd, env=p.env, stdin=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True)
p.attach(popen.pid)
time.sleep(60)
"""


def test_everything_dies_when_the_agent_is_killed(sandboxed, tmp_path):
    marker = new_marker()
    workdir = tempfile.mkdtemp(prefix="hodei-test-run-")
    command = f"{daemon(marker)} sleep {new_marker()}"
    agent = subprocess.Popen([sys.executable, "-c", FAKE_AGENT, str(REPO), command, workdir])
    try:
        wait_until(lambda: sleepers(marker))
        agent.kill()  # kill -9 of the agent
        agent.wait()
        assert_gone(marker)
    finally:
        agent.kill()
        agent.wait()
        subprocess.run(["rm", "-rf", workdir], check=False)


def test_kill_leaves_no_survivors(sandboxed, run):
    marker = new_marker()
    r = run(f"trap '' TERM; {daemon(marker)} sleep {new_marker()}")
    wait_until(lambda: sleepers(marker))
    r.prepared.kill()
    assert r.finish()[0] == 137
    assert_gone(marker)


# --- graceful stop -------------------------------------------------------------------------


def test_terminate_lets_the_command_clean_up(sandboxed, run):
    # `wait`, not a foreground sleep: bash runs a trap only once its foreground command
    # ends, and a SIGTERM sent while it forks that sleep (before the sleep is there to be
    # signalled too) would leave it waiting 30 s. In `wait` it runs the trap at once.
    r = run("trap 'echo bye; exit 3' TERM; sleep 30 & echo ready; wait")
    assert r.wait_line() == "ready\n"
    r.prepared.terminate()
    assert r.finish()[:2] == (3, "bye\n")


def test_terminate_without_a_trap_ends_like_sigterm(sandboxed, run):
    r = run("echo ready; sleep 30")
    assert r.wait_line() == "ready\n"
    r.prepared.terminate()
    assert r.finish()[0] == 128 + signal.SIGTERM


def test_a_command_ignoring_sigterm_is_killed_after_the_grace_period(sandboxed, run):
    marker = new_marker()
    r = run(f"trap '' TERM; echo ready; {daemon(marker)} sleep {new_marker()}")
    assert r.wait_line() == "ready\n"
    wait_until(lambda: sleepers(marker))
    r.prepared.terminate()
    time.sleep(0.2)  # the grace period
    assert r.popen.poll() is None
    r.prepared.kill()
    assert r.finish()[0] == 137
    assert_gone(marker)


# --- limits --------------------------------------------------------------------------------


def test_a_memory_hog_is_oom_killed_and_reported(sandboxed, run):
    hog = "x = bytearray(500 * 1024 * 1024); print('survived')"
    r = run(hog, interpreter=PY, limits=Limits(memory_limit_mb=64))
    needs_cgroup("memory_limit_mb", r.prepared)
    code, out, _ = r.finish()
    assert (code, out) == (137, "")
    assert r.prepared.oom_killed()
    r.prepared.cleanup()
    assert r.prepared.oom_killed()  # still known once the cgroup is gone


def test_a_normal_run_is_not_reported_as_oom(sandboxed, run):
    r = run("echo fine", limits=Limits(memory_limit_mb=64))
    assert r.finish()[0] == 0
    assert not r.prepared.oom_killed()


FORK_COUNTER = """
import os, time
forked = 0
try:
    while forked < 100:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        forked += 1
except OSError:
    pass
print(forked)
"""


def test_pids_limit_caps_forking(sandboxed, run):
    r = run(FORK_COUNTER, interpreter=PY, limits=Limits(pids_limit=20))
    needs_cgroup("pids_limit", r.prepared)
    code, out, _ = r.finish()
    assert code == 0
    # bwrap, its init and python count too.
    assert 0 < int(out) < 20


def test_a_fork_bomb_is_contained_and_cleaned_up(sandboxed, run):
    # Without the usual `&` every shell waits for its two children: the bomb stays alive
    # (with `&` the top shell returns at once and the sandbox's end kills the rest).
    r = run(":(){ :|: ; };:", limits=Limits(pids_limit=20))
    needs_cgroup("pids_limit", r.prepared)
    [cgroup] = r.prepared.cgroup_paths
    # The bomb hits the limit (the kernel counts refused forks in pids.events)...
    wait_until(lambda: int(Path(cgroup, "pids.events").read_text().split()[1]) > 0)
    assert len(Path(cgroup, "cgroup.procs").read_text().split()) <= 20
    # ...and is still going: the agent's timeout ends it.
    assert r.popen.poll() is None
    r.prepared.kill()
    assert r.finish()[0] == 137
    r.prepared.cleanup()
    assert not os.path.exists(cgroup)


def test_cpu_limit_throttles(sandboxed, run):
    script = """
import time
start, cpu = time.monotonic(), time.process_time()
while time.monotonic() - start < 0.5:
    pass
print(time.process_time() - cpu)
"""
    r = run(script, interpreter=PY, limits=Limits(cpu_limit=0.25))
    needs_cgroup("cpu_limit", r.prepared)
    code, out, _ = r.finish()
    # 0.25 cores for 0.5 s is 0.125 s of CPU; unthrottled it would be about 0.5 s.
    assert float(out) < 0.3


def test_cleanup_removes_the_cgroups_and_is_idempotent(sandboxed, run):
    limits = Limits(memory_limit_mb=128, pids_limit=50, cpu_limit=1.0)
    r = run("echo hi", limits=limits)
    paths = r.prepared.cgroup_paths
    assert paths and all(os.path.isdir(p) for p in paths)
    assert r.finish()[0] == 0
    r.prepared.cleanup()
    r.prepared.cleanup()
    assert not any(os.path.exists(p) for p in paths)


def test_without_cgroups_memory_falls_back_to_an_rlimit(sandboxed, run, monkeypatch):
    monkeypatch.setattr(sandbox, "_cgroup_layout", lambda: None)
    hog = "x = bytearray(500 * 1024 * 1024); print('survived')"
    r = run(hog, interpreter=PY, limits=Limits(memory_limit_mb=64))
    assert r.prepared.enforcement == {"memory_limit_mb": "rlimit"}
    code, out, err = r.finish()
    assert code == 1 and "MemoryError" in err
    assert not r.prepared.cgroup_paths


NON_ROOT_AGENT = """
import subprocess, sys, tempfile
sys.path.insert(0, sys.argv[1])
from agent.sandbox import SandboxConfig, prepare, probe
print(probe(SandboxConfig(uid=1000, gid=1000)))
own = SandboxConfig()  # 65534: the uid this agent runs as
print(probe(own))
p = prepare(own, execution_id="x", argv=["sh", "-c", "id -u; ls /proc | grep -c '^[0-9]'"],
            env={"PATH": "/usr/bin:/bin"}, workdir=tempfile.mkdtemp())
print(subprocess.run(p.argv, cwd=p.cwd, env=p.env, capture_output=True, text=True).stdout)
"""


def test_a_non_root_agent_sandboxes_only_as_itself(sandboxed):
    if os.geteuid() != 0:
        pytest.skip("needs root to start the non-root agent")
    switch = ["unshare", "--setgid", "65534", "--setuid", "65534", "--"]
    agent = [*switch, "/usr/bin/python3", "-B", "-c", NON_ROOT_AGENT, str(REPO)]
    out = subprocess.run(agent, capture_output=True, text=True, timeout=30, cwd="/").stdout
    refused, accepted, uid, processes = out.split("\n")[:4]
    assert "not root" in refused and "uid 1000" in refused
    assert accepted == "None"
    assert uid == "65534" and int(processes) <= 4


# --- isolation "none" ----------------------------------------------------------------------


def test_isolation_none_runs_the_plain_command(run):
    r = run("echo $PWD; exit 5", config=NONE)
    assert os.path.isabs(r.prepared.argv[0]) and r.prepared.argv[1:] == ["-c", "echo $PWD; exit 5"]
    assert r.finish() == (5, f"{r.workdir}\n", "")


def test_isolation_none_finds_the_interpreter_again_once_it_has_gone(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for directory in (first, second):
        directory.mkdir()
    path = f"{first}:{second}"

    def interpreter(directory):
        program = directory / "hodei-test-shell"
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
        return str(program)

    def prepared_argv0():
        config = SandboxConfig(isolation="none")
        argv = ["hodei-test-shell", "-c", "true"]
        return prepare(config, execution_id="x", argv=argv, env={"PATH": path}, workdir="/")

    interpreter(second)
    assert prepared_argv0().argv[0] == str(second / "hodei-test-shell")
    os.remove(second / "hodei-test-shell")
    interpreter(first)
    assert prepared_argv0().argv[0] == str(first / "hodei-test-shell")


def test_isolation_none_terminates_the_process_group(run):
    r = run("trap 'echo bye; exit 3' TERM; echo ready; sleep 30", config=NONE)
    assert r.wait_line() == "ready\n"
    r.prepared.terminate()
    # (bash may also report its sleep's death on stderr: "Terminated")
    assert r.finish()[:2] == (3, "bye\n")


def test_isolation_none_with_a_cgroup_kills_escaped_daemons(run):
    marker = new_marker()
    r = run(f"{daemon(marker)} sleep {new_marker()}", config=NONE, limits=Limits(pids_limit=50))
    needs_cgroup("pids_limit", r.prepared)
    wait_until(lambda: sleepers(marker))
    r.prepared.kill()
    assert r.finish()[0] == 137
    assert_gone(marker)
