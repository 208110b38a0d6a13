"""Spare shells: bash started before its command is known.

Starting bash costs 1.5 to 2 ms between Popen and the command's first instruction (the
exec, the dynamic loader, bash's own start), more than anything else between a row
created and its command running; in a sandbox, 8 ms (bubblewrap builds it first). An
agent keeps one bash (or a few: HODEI_SPARE_SHELLS) waiting in a fresh working
directory, in its own sandbox as configured, with the environment every command gets
from the agent. A claimed bash command is handed to it: the execution's own variables
and the command through a memfd, then one byte on its stdin to go. It starts in about
0.3 ms (0.4 in a sandbox).

The command runs as ``bash -c COMMAND`` would run it: the same $0, $-, $$, $_,
$LINENO, $SECONDS, $BASH_EXECUTION_STRING, environment, working directory, stdin
(/dev/null), open files and exit status (tests/agent/test_spare.py compares them). What
a command can tell apart:

- bash names its own syntax errors "eval:" instead of "-c:";
- ``bash -c`` execs the command's last simple command; a spare stays its parent, as
  ``bash -c`` does for every other command. So that program's parent is bash, bash
  reports it on stderr when a signal kills it ("Terminated", "Aborted"), and when it
  handles a SIGTERM (a timeout, a cancel) and exits of its own within its grace period,
  the run's exit status is 143 rather than the program's own;
- ``trap -p`` lists the TERM trap that lets that program have its grace period.

Handed to a fresh bash instead (cold, as before): runs with resource limits (their
cgroups and wrappers start with the process), sandboxed runs without the network (a
spare's sandbox has it), sh and python commands, and a run
whose environment changes what the agent gives every command (PATH, say) or sets a
variable bash reads at its start or manages itself (IFS, SHELLOPTS, BASH_ENV...).

A spare whose agent dies reads end of file on its stdin and exits (a sandboxed one is
also killed with it: bwrap --die-with-parent)."""

import logging
import os
import re
import shlex
import signal
import subprocess

from agent import sandbox
from agent.process import (
    ENV_NAME,
    INTERPRETERS,
    NO_LIMITS,
    agent_env,
    new_workdir,
    output_path,
    popen,
    release_workdir,
)

log = logging.getLogger("hodei.agent")

# Reads the go byte (or end of file: the agent is gone), gives the command /dev/null for
# stdin (read-write, as Popen's DEVNULL), reads the run's variables and its command from
# the memfd, closes it, and runs the command as -c would: $SECONDS from 0, $_ the shell's
# $0. {fd} is the memfd's number. One line, so that the command's $LINENO counts from
# 1 as under -c.
#
# bash -c execs its last simple command, so SIGTERM (a timeout, a cancel) reaches the
# program alone and it may take its grace period to exit. eval does not: bash stays the
# program's parent and would die of the SIGTERM at once, and the agent would then kill
# the program before its grace. The TERM trap lets bash wait for its command, then die
# of the same signal (exit status 143, where the program's own might have been given).
WRAPPER = (
    "trap 'trap - TERM; kill -TERM $$' TERM; IFS= read -r __hodei || exit 0;"
    ' exec 0<>/dev/null; IFS= read -r -d "" __hodei_env <&{fd}'
    ' && IFS= read -r -d "" __hodei <&{fd}; exec {fd}<&-; eval "$__hodei_env";'
    " unset __hodei_env; BASH_EXECUTION_STRING=$__hodei; SECONDS=0;"
    r' eval "unset __hodei; : \"\$0\"; $__hodei"'
)

# Variables bash reads when it starts or manages itself (the bash manual's "Shell
# Variables"): set at its start or afterwards they differ, so a run that sets one starts
# a fresh bash.
SHELL_VARIABLES = frozenset(
    [
        "BASH",
        "BASHOPTS",
        "BASHPID",
        "CDPATH",
        "CHILD_MAX",
        "COLUMNS",
        "COMPREPLY",
        "COPROC",
        "DIRSTACK",
        "EMACS",
        "ENV",
        "EPOCHREALTIME",
        "EPOCHSECONDS",
        "EUID",
        "EXECIGNORE",
        "FCEDIT",
        "FIGNORE",
        "FUNCNAME",
        "FUNCNEST",
        "GLOBIGNORE",
        "GROUPS",
        "HOSTFILE",
        "HOSTNAME",
        "HOSTTYPE",
        "IFS",
        "IGNOREEOF",
        "INPUTRC",
        "INSIDE_EMACS",
        "LINENO",
        "LINES",
        "MACHTYPE",
        "MAIL",
        "MAILCHECK",
        "MAILPATH",
        "MAPFILE",
        "OLDPWD",
        "OPTARG",
        "OPTERR",
        "OPTIND",
        "OSTYPE",
        "PIPESTATUS",
        "POSIXLY_CORRECT",
        "PPID",
        "PROMPT_COMMAND",
        "PROMPT_DIRTRIM",
        "PS0",
        "PS1",
        "PS2",
        "PS3",
        "PS4",
        "PWD",
        "RANDOM",
        "REPLY",
        "SECONDS",
        "SHELL",
        "SHELLOPTS",
        "SHLVL",
        "SRANDOM",
        "TIMEFORMAT",
        "TMOUT",
        "UID",
        "histchars",
    ]
)
SHELL_PREFIXES = re.compile(r"BASH_|COMP_|HIST|LC_|READLINE_|__hodei")


def shell_reads(name: str) -> bool:
    return name in SHELL_VARIABLES or SHELL_PREFIXES.match(name) is not None


class Spare:
    """One bash waiting for its command, in its own working directory and session."""

    def __init__(self, *, workdir_root: str | None, config: sandbox.SandboxConfig):
        self.workdir = new_workdir(workdir_root)
        self.workdir_root = workdir_root
        self.config = config
        self.owner = (os.getuid(), os.getgid())
        self.output_path = output_path(config, self.workdir)
        self.memfd = os.memfd_create("hodei-spare", os.MFD_CLOEXEC)
        self.prepared = None
        self.popen = None
        self.broken = False  # it could not be handed a command: to be discarded
        try:
            self.prepared = sandbox.prepare(
                config,
                execution_id="spare",
                argv=[*INTERPRETERS["bash"], WRAPPER.format(fd=self.memfd)],
                env={**agent_env(config), "HODEI_OUTPUT": self.output_path},
                workdir=self.workdir,
            )
            # What every command it runs gets, as the command sees it (in its sandbox).
            self.env = self.prepared.env
            info = os.lstat(self.workdir)  # the sandbox user's now, if the agent is root
            self.owner = (info.st_uid, info.st_gid)
            self.popen = popen(self.prepared, stdin=subprocess.PIPE, pass_fds=(self.memfd,))
        except BaseException:
            self.discard()
            raise

    def script(self, env: dict[str, str]) -> str | None:
        """The statements that make this spare's environment ``env``, or None when a
        fresh bash must run it (see the module's docstring)."""
        env = sandbox.inside_env(self.config, {**env, "HODEI_OUTPUT": self.output_path})
        if any(env.get(name) != value for name, value in self.env.items()):
            return None
        exports = []
        for name, value in env.items():
            if name in self.env:
                continue
            if not ENV_NAME.fullmatch(name) or shell_reads(name) or "\0" in value:
                return None
            exports.append(f"export {name}={shlex.quote(value)}")
        return "\n".join(exports)

    def start(self, command: str, env: dict[str, str]) -> bool:
        """Run ``command`` with ``env``. False, and nothing started, if this spare
        cannot run it (the caller starts a fresh bash; this spare stays usable), or
        is ``broken`` (died, or its stdin is gone: the caller discards it)."""
        script = self.script(env)
        if script is None or "\0" in command:
            return False
        if self.popen.poll() is not None:
            self.broken = True
            return False
        try:
            # As Popen encodes arguments and variables (os.fsencode).
            data = f"{script}\0{command}\0".encode("utf-8", "surrogateescape")
            os.pwrite(self.memfd, data, 0)
            os.write(self.popen.stdin.fileno(), b"\n")
        except (OSError, UnicodeError):  # died meanwhile (EPIPE), or cannot take it
            self.broken = True
            return False
        self.popen.stdin.close()
        os.close(self.memfd)
        self.memfd = None
        return True

    def discard(self) -> None:
        """Stop it and forget it (it never ran anything), its directory with it."""
        if self.popen is not None:
            if self.popen.returncode is None:  # not reaped: its pid is still its own
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except OSError:
                    pass
            self.popen.wait()
            for pipe in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
                pipe.close()
        if self.prepared is not None:
            self.prepared.cleanup()
        if self.memfd is not None:
            os.close(self.memfd)
            self.memfd = None
        release_workdir(self.workdir_root, self.workdir, self.owner)


class SpareShells:
    """An agent's spare shells (``count`` 0 keeps none)."""

    def __init__(self, *, count: int, workdir_root: str | None, config: sandbox.SandboxConfig):
        self.count = count
        self.workdir_root = workdir_root
        self.config = config
        self.spares: list[Spare] = []

    def fill(self, room: int) -> int:
        """Start spares until there are ``count`` of them, or ``room`` (the agent's free
        slots). Returns how many it started."""
        started = 0
        while len(self.spares) < min(self.count, room):
            try:
                self.spares.append(Spare(workdir_root=self.workdir_root, config=self.config))
            except (OSError, sandbox.SandboxError) as exc:
                log.warning("no spare shells: %s; commands start a fresh bash each", exc)
                self.count = 0
                break
            started += 1
        return started

    def start(
        self,
        *,
        type: str,
        command: str,
        env: dict[str, str],
        limits: sandbox.Limits,
        network: bool = True,
    ) -> Spare | None:
        """A spare running ``command``, if one can; None otherwise (start it cold).
        Spares are sandboxed as configured, with the network: a run without it, or
        with resource limits, starts its own sandbox."""
        if type != "bash" or limits != NO_LIMITS:
            return None
        if not network and self.config.isolation == "sandbox":
            return None
        while self.spares:
            spare = self.spares[-1]
            if spare.start(command, env):
                self.spares.pop()
                return spare
            if not spare.broken:
                return None  # this run needs a fresh bash
            self.spares.pop().discard()  # try the next one
        return None

    def workdirs(self) -> list[str]:
        return [spare.workdir for spare in self.spares]

    def close(self) -> None:
        while self.spares:
            self.spares.pop().discard()
