"""One command running in its own process group, in a fresh working directory."""

import os
import shutil
import signal
import subprocess
import tempfile
import time

# orchestrator.choices.CommandType -> its interpreter (this module runs without Django).
INTERPRETERS = {
    "bash": ["bash", "-c"],
    "sh": ["sh", "-c"],
    "python": ["python3", "-c"],
}

# The agent's own environment holds secrets (DATABASE_URL, SECRET_KEY): a command gets
# only these basics from it, then the job's variables.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "SHELL", "TMPDIR")


def command_env(assignment) -> dict[str, str]:
    """The agent's basics, the execution's variables (its job's, with the run's
    overrides), the job's secrets, and Hodei's own."""
    env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(assignment.env)
    env.update(assignment.secret_env)
    env.update(
        HODEI_EXECUTION_ID=assignment.id,
        HODEI_JOB_ID=assignment.job_id,
        HODEI_ATTEMPT=str(assignment.attempt),
    )
    return env


class CommandProcess:
    """A started command. Reading its pipes is the caller's job (one selector for all)."""

    def __init__(self, *, command: str, type: str, env: dict[str, str], workdir_root: str | None):
        self.workdir = tempfile.mkdtemp(prefix="hodei-run-", dir=workdir_root)
        try:
            # start_new_session gives the command its own process group (to kill it whole)
            # without preexec_fn, which would force Python's slow fork() path.
            self.popen = subprocess.Popen(
                [*INTERPRETERS[type], command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self.pid = self.popen.pid
        self.pidfd = os.pidfd_open(self.pid) if hasattr(os, "pidfd_open") else None
        for pipe in (self.popen.stdout, self.popen.stderr):
            os.set_blocking(pipe.fileno(), False)
        self.returncode: int | None = None
        self.kill_sent_at: float | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            code = self.popen.poll()
            if code is not None:
                # A negative code is a signal; shells report 128 + signal.
                self.returncode = code if code >= 0 else 128 - code
        return self.returncode

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self) -> None:
        """SIGTERM to the whole group; the caller sends SIGKILL after its grace period."""
        if self.kill_sent_at is None:
            self.kill_sent_at = time.monotonic()
            self.signal_group(signal.SIGTERM)

    def close(self) -> None:
        # Whatever the command left running in its group goes with it.
        self.signal_group(signal.SIGKILL)
        for pipe in (self.popen.stdout, self.popen.stderr):
            try:
                pipe.close()
            except OSError:
                pass
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        shutil.rmtree(self.workdir, ignore_errors=True)
