"""One command running in a fresh working directory: in its own sandbox (agent.sandbox:
PID namespace, unprivileged user, read-only system, private /tmp, resource limits), or,
with isolation "none", as a plain process group of the agent's own user."""

import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time

from agent import sandbox

# orchestrator.choices.CommandType -> its interpreter (this module runs without Django).
INTERPRETERS = {
    "bash": ["bash", "-c"],
    "sh": ["sh", "-c"],
    "python": ["python3", "-c"],
}

# The agent's own environment holds secrets (DATABASE_URL, SECRET_KEY, its credential): a
# command gets only these basics from it, then the job's variables.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "SHELL", "TMPDIR")
# Inside a sandbox the agent's paths and user mean nothing: only the locale and zone pass.
SANDBOX_INHERITED_ENV = ("LANG", "LC_ALL", "TZ")
NO_LIMITS = sandbox.Limits()
OUTPUT_FILE = ".hodei-output"  # in the working directory; $HODEI_OUTPUT names it
MAX_OUTPUTS_BYTES = 64 * 1024
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def agent_env(config: sandbox.SandboxConfig | None = None) -> dict[str, str]:
    """What every command gets from the agent: its basics (or the sandbox's)."""
    sandboxed = config is not None and config.isolation == "sandbox"
    inherited = SANDBOX_INHERITED_ENV if sandboxed else INHERITED_ENV
    env = {name: os.environ[name] for name in inherited if name in os.environ}
    if sandboxed:
        env.update(PATH=SYSTEM_PATH, **_user_env(config.uid))
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def command_env(assignment, *, config: sandbox.SandboxConfig | None = None) -> dict[str, str]:
    """The agent's basics, the execution's variables (its job's, with the run's
    overrides), the job's secrets, and Hodei's own."""
    env = agent_env(config)
    env.update(assignment.env)
    env.update(assignment.secret_env)
    env.update(
        HODEI_EXECUTION_ID=assignment.id,
        HODEI_JOB_ID=assignment.job_id,
        HODEI_ATTEMPT=str(assignment.attempt),
    )
    return env


# Working directories that runs left empty, kept for the next run, per root. Creating
# and removing a directory costs about 0.3 ms on a journaling filesystem (ext4) and a
# drain runs hundreds a second; an empty directory of the same owner and mode 0700 is
# as good as a new one. Whatever a command left in its directory goes with it (rmtree).
MAX_KEPT_WORKDIRS = 64
_kept_workdirs: dict[str | None, list[str]] = {}


def new_workdir(root: str | None) -> str:
    kept = _kept_workdirs.get(root)
    while kept:
        path = kept.pop()
        if os.path.isdir(path):
            return path
    return tempfile.mkdtemp(prefix="hodei-run-", dir=root)


def release_workdir(root: str | None, path: str, owner: tuple[int, int]) -> None:
    """Keep ``path`` for the next run if it is as ``new_workdir`` gave it (empty, mode
    0700, the same owner), else remove it with whatever is in it."""
    kept = _kept_workdirs.setdefault(root, [])
    try:
        info = os.lstat(path)
        with os.scandir(path) as entries:
            empty = next(entries, None) is None
        if (
            empty
            and len(kept) < MAX_KEPT_WORKDIRS
            and stat.S_ISDIR(info.st_mode)
            and stat.S_IMODE(info.st_mode) == 0o700
            and (info.st_uid, info.st_gid) == owner
        ):
            kept.append(path)
            return
    except OSError:
        pass
    shutil.rmtree(path, ignore_errors=True)


def remove_kept_workdirs() -> None:
    """When the agent stops: remove the working directories it kept."""
    for kept in _kept_workdirs.values():
        while kept:
            shutil.rmtree(kept.pop(), ignore_errors=True)


def output_path(config: sandbox.SandboxConfig, workdir: str) -> str:
    """$HODEI_OUTPUT of a run in ``workdir``, as the command sees it."""
    inside = sandbox.SANDBOX_WORKDIR if config.isolation == "sandbox" else workdir
    return os.path.join(inside, OUTPUT_FILE)


def popen(prepared: sandbox.Prepared, *, stdin, pass_fds=()) -> subprocess.Popen:
    """Start a prepared command, its output on pipes. start_new_session gives it its own
    process group (to kill it whole) without preexec_fn, which would force Python's slow
    fork() path."""
    return subprocess.Popen(
        prepared.argv,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=prepared.cwd,
        env=prepared.env,
        start_new_session=True,
        close_fds=True,
        pass_fds=pass_fds,
    )


def _user_env(uid: int) -> dict[str, str]:
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return {"USER": name, "LOGNAME": name}


class CommandProcess:
    """A started command. Reading its pipes is the caller's job (one selector for all)."""

    def __init__(
        self,
        *,
        execution_id: str,
        command: str,
        type: str,
        env: dict[str, str],
        workdir_root: str | None,
        config: sandbox.SandboxConfig,
        network: bool = True,
        limits: sandbox.Limits = NO_LIMITS,
        spares=None,
    ):
        """``spares`` (agent.spare.SpareShells): run it in a spare shell if one can."""
        self.workdir_root = workdir_root
        spare = None
        if spares is not None:
            spare = spares.start(
                type=type, command=command, env=env, limits=limits, network=network
            )
        if spare is not None:
            self.workdir, self.prepared, self.popen = spare.workdir, spare.prepared, spare.popen
        else:
            self._start_fresh(
                execution_id=execution_id,
                command=command,
                type=type,
                env=env,
                config=config,
                network=network,
                limits=limits,
            )
        # Who owns it now (prepare may have given it to the sandbox user): kept for the
        # next run only if that has not changed.
        info = os.lstat(self.workdir)
        self._workdir_owner = (info.st_uid, info.st_gid)
        self.prepared.attach(self.popen.pid)
        self.pid = self.popen.pid
        self.pidfd = self.prepared.pidfd  # readable once it exits; closed by cleanup
        for pipe in (self.popen.stdout, self.popen.stderr):
            os.set_blocking(pipe.fileno(), False)
        self.returncode: int | None = None
        self.kill_sent_at: float | None = None

    def _start_fresh(
        self,
        *,
        execution_id: str,
        command: str,
        type: str,
        env: dict[str, str],
        config: sandbox.SandboxConfig,
        network: bool,
        limits: sandbox.Limits,
    ) -> None:
        """Start a fresh interpreter (in its sandbox, as configured)."""
        self.workdir = new_workdir(self.workdir_root)
        env = {**env, "HODEI_OUTPUT": output_path(config, self.workdir)}
        self.prepared = None
        try:
            self.prepared = sandbox.prepare(
                config,
                execution_id=execution_id,
                argv=[*INTERPRETERS[type], command],
                env=env,
                workdir=self.workdir,
                network=network,
                limits=limits,
            )
            self.popen = popen(self.prepared, stdin=subprocess.DEVNULL)
        except BaseException:
            if self.prepared is not None:
                self.prepared.cleanup()
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise

    def poll(self) -> int | None:
        if self.returncode is None:
            code = self.popen.poll()
            if code is not None:
                # A negative code is a signal; shells report 128 + signal.
                self.returncode = code if code >= 0 else 128 - code
        return self.returncode

    def outputs(self) -> tuple[dict[str, str], list[str]]:
        """What the command wrote to $HODEI_OUTPUT, as KEY=value lines (dotenv, as GitLab
        reads them): the variables, and a warning for each line it could not read. At
        most MAX_OUTPUTS_BYTES are read."""
        path = os.path.join(self.workdir, OUTPUT_FILE)
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_OUTPUTS_BYTES + 1)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            return {}, []
        warnings = []
        if len(data) > MAX_OUTPUTS_BYTES:
            data = data[:MAX_OUTPUTS_BYTES]
            warnings.append(
                f"$HODEI_OUTPUT is longer than {MAX_OUTPUTS_BYTES} bytes; the rest is ignored."
            )
        outputs = {}
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, sep, value = line.partition("=")
            name = name.strip()
            if not sep or not ENV_NAME.fullmatch(name) or "\x00" in value:
                warnings.append(f"$HODEI_OUTPUT line {number} is not KEY=value; ignored.")
                continue
            outputs[name] = value
        return outputs, warnings

    @property
    def oom_killed(self) -> bool:
        """Whether its memory limit killed it (known once it has exited)."""
        return self.prepared.oom_killed()

    def terminate(self) -> None:
        """SIGTERM to the command (graceful); the caller kills it after its grace period."""
        if self.kill_sent_at is None:
            self.kill_sent_at = time.monotonic()
            self.prepared.terminate()

    def kill(self) -> None:
        """SIGKILL to everything of this execution: nothing it started survives."""
        self.prepared.kill()

    def close(self) -> None:
        # Whatever the command left running goes with it (cleanup kills it first).
        self.prepared.cleanup()
        for pipe in (self.popen.stdout, self.popen.stderr):
            try:
                pipe.close()
            except OSError:
                pass
        self.pidfd = None
        release_workdir(self.workdir_root, self.workdir, self._workdir_owner)
