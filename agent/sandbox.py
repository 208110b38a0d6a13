"""Run one job command in a sandbox, with per-job resource limits.

Pure standard library (no Django) so that a standalone agent can use it.

The sandbox is bubblewrap (bwrap), started as an unprivileged user:

    [/bin/sh -c 'echo $$ > <cgroup>/cgroup.procs && exec "$@"']   only when cgroups are used
    [prlimit --as=... --nproc=...]                                 only for the rlimit fallback
    unshare --setgid G --setuid U --                               only when the agent is root
    bwrap --unshare-user --unshare-pid ... --die-with-parent -- <interpreter argv>

Every wrapper execs the next one, so the pid the agent gets from Popen is bwrap's. bwrap
forks an init process (pid 1 of the new pid namespace) which runs the command as pid 2.
When that init dies the kernel kills every process left in the namespace, daemons
included; that is what makes "nothing survives" hold.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import cache, lru_cache

# Where the execution's working directory appears inside the sandbox (and its HOME).
SANDBOX_WORKDIR = "/workspace"
# Per-execution cgroups live in <agent's own cgroup>/hodei/<execution id>.
CGROUP_GROUP = "hodei"
CGROUP_ROOT = "/sys/fs/cgroup"
CPU_PERIOD_US = 100_000
# Top-level directories that are either real directories or merged-/usr symlinks.
SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ISOLATIONS = ("sandbox", "none")

FALLBACK_HINT = "or run the agent without a sandbox: --isolation none (HODEI_ISOLATION=none)"


class SandboxError(RuntimeError):
    """The sandbox cannot be set up as configured; the message says why."""


@dataclass(frozen=True)
class Limits:
    memory_limit_mb: int | None = None
    pids_limit: int | None = None
    cpu_limit: float | None = None  # cores


@dataclass(frozen=True)
class SandboxConfig:
    isolation: str = "sandbox"  # "sandbox" | "none"
    uid: int = 65534
    gid: int = 65534
    bwrap: str = "bwrap"  # path or name on PATH
    extra_ro_binds: tuple[str, ...] = ()  # extra host paths to expose read-only


# --- probe ---------------------------------------------------------------------------------

_probe_results: dict[SandboxConfig, str | None] = {}


ROOT_REFUSED = "the sandbox uid/gid must not be 0 (root); the default is 65534."


def probe(config: SandboxConfig) -> str | None:
    """None if commands can run as configured here, else the reason and how to fix it.

    Runs a sandboxed `true` once (user namespaces may be disabled by the kernel or by
    AppArmor even though bwrap is installed); the answer is cached per config."""
    if config not in _probe_results:
        reason = _config_problem(config)
        if reason is None and config.isolation == "sandbox":
            reason = _try_sandbox(config)
        _probe_results[config] = reason
    return _probe_results[config]


def _config_problem(config: SandboxConfig) -> str | None:
    if config.isolation not in ISOLATIONS:
        return f"unknown isolation {config.isolation!r}: use one of {', '.join(ISOLATIONS)}."
    if config.isolation == "none":
        return None
    if config.uid == 0 or config.gid == 0:  # wrong wherever it runs: said first
        return ROOT_REFUSED
    if _which(config.bwrap) is None:
        return (
            f"bubblewrap ({config.bwrap!r}) is not installed or not on PATH, so commands "
            f"cannot be sandboxed. Install it (`apt-get install bubblewrap`) {FALLBACK_HINT}."
        )
    try:
        _check_identity(config)
    except SandboxError as exc:
        return str(exc)
    for path in config.extra_ro_binds:
        if not os.path.isabs(path) or not os.path.exists(path):
            return f"extra_ro_binds entry {path!r} must be an existing absolute path."
    return None


def _try_sandbox(config: SandboxConfig) -> str | None:
    workdir = tempfile.mkdtemp(prefix="hodei-probe-")
    prepared = None
    try:
        prepared = prepare(
            config,
            execution_id=f"probe-{os.getpid()}",
            argv=["true"],
            env={"PATH": "/usr/bin:/bin"},
            workdir=workdir,
        )
        done = subprocess.run(
            prepared.argv,
            cwd=prepared.cwd,
            env=prepared.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=20,
            start_new_session=True,
        )
    except (OSError, SandboxError, subprocess.SubprocessError) as exc:
        return f"could not start a sandboxed test command: {exc}. {FALLBACK_HINT}."
    finally:
        if prepared is not None:
            prepared.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    if done.returncode == 0:
        return None
    error = done.stderr.decode(errors="replace").strip()[-500:] or f"exit {done.returncode}"
    return (
        f"bubblewrap is installed but a sandboxed `true` failed ({error}). Usually user "
        "namespaces are disabled: check the sysctls user.max_user_namespaces (> 0), "
        "kernel.unprivileged_userns_clone (= 1, Debian kernels) and "
        "kernel.apparmor_restrict_unprivileged_userns (= 0, Ubuntu 24.04+, or give bwrap "
        f"an AppArmor profile); inside a container, allow unshare/mount (seccomp) {FALLBACK_HINT}."
    )


def _check_identity(config: SandboxConfig) -> None:
    """Commands never run as root, and only as the agent's own uid if asked to explicitly."""
    if config.uid == 0 or config.gid == 0:
        raise SandboxError(ROOT_REFUSED)
    if os.geteuid() == 0:
        if _which("unshare") is None:
            raise SandboxError(
                "unshare (util-linux) is needed to switch to the sandbox uid: "
                f"`apt-get install util-linux` {FALLBACK_HINT}."
            )
        return
    # Without root the agent cannot switch uid: the command would run as the agent's own
    # uid. That is still isolated by the namespaces, but only on explicit request.
    if (config.uid, config.gid) != (os.getuid(), os.getgid()):
        raise SandboxError(
            f"the agent runs as uid {os.getuid()}, not root, so it cannot run commands as "
            f"uid {config.uid}/gid {config.gid}. Run the agent as root, or set the sandbox "
            f"uid/gid to the agent's own ({os.getuid()}/{os.getgid()}) to accept commands "
            f"running as the agent's user inside the sandbox, {FALLBACK_HINT}."
        )


# --- prepare -------------------------------------------------------------------------------


def prepare(
    config: SandboxConfig,
    *,
    execution_id: str,
    argv: list[str],
    env: dict[str, str],
    workdir: str,
    network: bool = True,
    limits: Limits = Limits(),
) -> Prepared:
    """The argv/cwd/env to start ``argv`` with, sandboxed as configured.

    Creates the execution's cgroups when limits are set: call ``cleanup()`` afterwards even
    if Popen failed. With isolation "none" the command runs as the agent, as before."""
    if config.isolation not in ISOLATIONS:
        raise SandboxError(_config_problem(config))
    env = inside_env(config, env)
    if config.isolation == "sandbox":
        _check_identity(config)
        if os.geteuid() == 0:
            # mkdtemp made it 0700 root: the sandbox user must be able to write in it.
            os.chown(workdir, config.uid, config.gid)
        command = [*_user_switch(config), *_bwrap_argv(config, workdir, network), "--", *argv]
        cwd = "/"
    else:
        program = _which_on(argv[0], env.get("PATH", os.defpath)) or argv[0]
        command = [program, *argv[1:]]
        cwd = workdir

    cgroups, rlimits, enforcement = _apply_limits(_cgroup_name(execution_id), limits)
    if rlimits:
        command = [_need("prlimit"), *rlimits, "--", *command]
    if cgroups:
        # Race-free placement: the shell joins the cgroups, then execs the rest, so the
        # command's first instruction already runs inside them.
        joins = " && ".join(f"echo $$ > {shlex.quote(c.procs_file)}" for c in cgroups)
        command = [_need("sh"), "-c", f'{joins} && exec "$@"', "sh", *command]
    return Prepared(
        argv=command,
        cwd=cwd,
        env=env,
        sandboxed=config.isolation == "sandbox",
        cgroups=cgroups,
        enforcement=enforcement,
    )


def inside_env(config: SandboxConfig, env: dict[str, str]) -> dict[str, str]:
    """The environment the command gets from ``env``: in a sandbox, the agent's HOME (and
    TMPDIR) are host paths it cannot see, so they are the working directory and /tmp."""
    env = dict(env)
    if config.isolation == "sandbox":
        env["HOME"] = SANDBOX_WORKDIR
        if "TMPDIR" in env:
            env["TMPDIR"] = "/tmp"
    return env


def _user_switch(config: SandboxConfig) -> list[str]:
    if os.geteuid() != 0:
        return []  # _check_identity allowed only the agent's own uid
    # util-linux unshare without namespace flags only switches user: setgroups(0) (no
    # supplementary groups), setgid, setuid; from root to another uid that also clears
    # all capabilities. It starts 0.5 ms faster than `setpriv --reuid --regid
    # --clear-groups`, which does the same.
    return [_need("unshare"), "--setgid", str(config.gid), "--setuid", str(config.uid), "--"]


def _bwrap_argv(config: SandboxConfig, workdir: str, network: bool) -> list[str]:
    bwrap = _which(config.bwrap)
    if bwrap is None:
        raise SandboxError(_config_problem(config))
    args = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    args += ["--unshare-cgroup-try", "--die-with-parent"]
    if "--disable-userns" in _bwrap_help(bwrap):
        args.append("--disable-userns")  # no nested user namespaces (kernel attack surface)
    if not network:
        args.append("--unshare-net")
    args += _system_mounts(network)
    for path in config.extra_ro_binds:
        args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    args += ["--bind", workdir, SANDBOX_WORKDIR, "--chdir", SANDBOX_WORKDIR]
    # The root is a tmpfs bwrap built the tree in: make it read-only too, so the writable
    # places are exactly the workdir, /tmp and /dev/shm.
    args += ["--remount-ro", "/"]
    return args


@cache
def _system_mounts(network: bool) -> tuple[str, ...]:
    args = ["--ro-bind", "/usr", "/usr"]
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--ro-bind", "/etc", "/etc"]
    # /etc/resolv.conf is often a symlink into /run (systemd-resolved): expose that dir
    # too, or DNS does not work inside.
    resolv = os.path.realpath("/etc/resolv.conf")
    if network and not resolv.startswith("/etc/") and os.path.exists(resolv):
        args += ["--ro-bind", os.path.dirname(resolv), os.path.dirname(resolv)]
    return tuple(args)


@cache
def _bwrap_help(bwrap: str) -> str:
    # Optional flags (like --disable-userns, bwrap >= 0.8) are used only when supported.
    try:
        done = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout + done.stderr


@cache  # a lookup walks PATH; the agent's PATH does not change while it runs
def _which(name: str) -> str | None:
    found = shutil.which(name)
    return os.path.abspath(found) if found else None


@lru_cache(maxsize=64)
def _found_on(name: str, path: str) -> str | None:
    return shutil.which(name, path=path)


def _which_on(name: str, path: str) -> str | None:
    """``name`` as a command's PATH finds it. A lookup walks PATH (eight stats for bash
    on the default PATH, on every run): what it found is kept while it stays there."""
    found = _found_on(name, path)
    if found is not None and not os.access(found, os.X_OK):
        _found_on.cache_clear()
        found = _found_on(name, path)
    return found


def _need(name: str) -> str:
    found = _which(name)
    if found is None:
        raise SandboxError(f"{name} is not installed or not on PATH")
    return found


def _cgroup_name(execution_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(execution_id)).lstrip(".")
    return name or "execution"


# --- the prepared execution ----------------------------------------------------------------


class Prepared:
    """One prepared execution: how to start it, and how to stop and clean it up."""

    def __init__(
        self,
        *,
        argv: list[str],
        cwd: str,
        env: dict[str, str],
        sandboxed: bool,
        cgroups: list[_Cgroup],
        enforcement: dict[str, str],
    ):
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.sandboxed = sandboxed
        # How each requested limit is enforced: "cgroup v1", "cgroup v2", "rlimit" or
        # "not enforced" (for the agent's log).
        self.enforcement = enforcement
        self.pid: int | None = None
        self._cgroups = cgroups
        self._pidfd: int | None = None
        self._oom: bool | None = None
        self._cleaned = False

    @property
    def cgroup_paths(self) -> list[str]:
        """The execution's cgroup directories (empty without cgroup-enforced limits)."""
        return [c.path for c in self._cgroups]

    def attach(self, pid: int) -> None:
        """Right after Popen: pin the pid (a pidfd) so no signal can hit a recycled pid."""
        self.pid = pid
        self._pidfd = os.pidfd_open(pid)

    def terminate(self) -> None:
        """SIGTERM the command's processes, so that they can exit gracefully.

        bwrap does not forward signals: SIGTERM to the Popen pid (bwrap) kills it, and
        --die-with-parent then SIGKILLs the sandbox at once. So this signals every process
        of the sandbox's pid namespace except its init, which exits with the command."""
        if self._done():
            return
        if not self.sandboxed:
            self._signal_group(signal.SIGTERM)
            return
        init = self._sandbox_init()
        if init is None:
            # bwrap is still setting up (nothing of the command runs yet) or already gone.
            self._signal_top(signal.SIGTERM)
            return
        try:
            namespace = _namespace_of(init.pid)
            for pid in _namespace_members(namespace):
                if pid != init.pid:
                    _signal_if(pid, signal.SIGTERM, lambda p: _namespace_of(p) == namespace)
        except OSError:
            pass  # the namespace is gone: everything in it is dead already
        finally:
            os.close(init.fd)

    def kill(self) -> None:
        """SIGKILL everything of this execution; nothing survives."""
        if not self._done():
            self._kill()

    def _kill(self) -> None:
        if self.sandboxed:
            init = self._sandbox_init()
            if init is not None:
                # Killing the namespace's init makes the kernel kill all its processes;
                # bwrap (the Popen pid) then reaps it and exits with 137 on its own.
                _send(init.fd, signal.SIGKILL)
                os.close(init.fd)
                return
            # No init (yet): bwrap dies, and --die-with-parent takes its child along.
            self._signal_top(signal.SIGKILL)
        else:
            self._signal_group(signal.SIGKILL)
        # Without a namespace, the cgroups are what knows every process, daemons included.
        for cgroup in self._cgroups:
            cgroup.kill_all()

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of this execution."""
        if self._oom is None:
            return any(c.oom_kills() > 0 for c in self._cgroups)
        return self._oom

    def cleanup(self) -> None:
        """After the process ended: kill leftovers, remove the cgroups. Idempotent."""
        if self._cleaned:
            return
        self._cleaned = True
        try:
            if self.pid is not None:
                self._kill()
            # Remember the OOM verdict: the counters go away with the cgroups.
            self._oom = any(c.oom_kills() > 0 for c in self._cgroups)
            for cgroup in self._cgroups:
                cgroup.remove()
        except Exception:  # cleanup runs in finally blocks: it must never raise
            pass
        finally:
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None

    # helpers

    def _done(self) -> bool:
        """True once cleaned up (all is dead then); an error if attach() was missed."""
        if self._cleaned:
            return True
        self._require_attached()
        return False

    @property
    def pidfd(self) -> int | None:
        """The pinned pidfd of the command (readable once it exits), until cleanup."""
        return self._pidfd

    def _require_attached(self) -> int:
        if self._pidfd is None:
            raise RuntimeError("call attach(popen.pid) right after Popen")
        return self._pidfd

    def _signal_top(self, sig: int) -> None:
        _send(self._require_attached(), sig)

    def _signal_group(self, sig: int) -> None:
        # As the agent did before: the command's process group (start_new_session).
        self._require_attached()
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _sandbox_init(self) -> _Pinned | None:
        """bwrap's child: pid 1 of the sandbox's pid namespace (None if not there)."""
        top = self._require_attached()
        children = _children(self.pid)
        # Only trust the children list if bwrap was not reaped meanwhile (pid reuse).
        if not _alive(top):
            return None
        for child in children:
            pinned = _pin(child, lambda p: _parent_of(p) == self.pid)
            if pinned is not None:
                return pinned
        return None


# --- processes -----------------------------------------------------------------------------


@dataclass
class _Pinned:
    pid: int
    fd: int


def _pin(pid: int, still_ours) -> _Pinned | None:
    """A pidfd for ``pid``, once ``still_ours(pid)`` confirms it is the process we mean."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        if still_ours(pid):
            return _Pinned(pid, fd)
    except OSError:
        pass
    os.close(fd)
    return None


def _signal_if(pid: int, sig: int, still_ours) -> None:
    pinned = _pin(pid, still_ours)
    if pinned is not None:
        _send(pinned.fd, sig)
        os.close(pinned.fd)


def _send(pidfd: int, sig: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pidfd: int) -> bool:
    # True for a zombie too: its pid is not reusable until reaped.
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    return True


def _children(pid: int) -> list[int]:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(p) for p in f.read().split()]
        except FileNotFoundError:
            # Kernel without CONFIG_PROC_CHILDREN: scan everyone's parent instead.
            return [p for p in _all_pids() if _parent_of_or_none(p) == pid]
        except OSError:
            pass
    return found


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        # The command name may contain spaces and parentheses: fields follow the last ')'.
        return int(f.read().rpartition(")")[2].split()[1])


def _parent_of_or_none(pid: int) -> int | None:
    try:
        return _parent_of(pid)
    except (OSError, ValueError, IndexError):
        return None


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _namespace_of(pid: int) -> tuple[int, int]:
    st = os.stat(f"/proc/{pid}/ns/pid")
    return st.st_dev, st.st_ino


def _namespace_members(namespace: tuple[int, int]) -> list[int]:
    members = []
    for pid in _all_pids():
        try:
            if _namespace_of(pid) == namespace:
                members.append(pid)
        except OSError:
            pass
    return members


# --- limits: cgroups, else rlimits ---------------------------------------------------------


@dataclass
class _Cgroup:
    path: str  # the execution's directory
    version: int  # 1 or 2
    relative: str  # as listed in /proc/<pid>/cgroup

    @property
    def procs_file(self) -> str:
        return os.path.join(self.path, "cgroup.procs")

    def write(self, name: str, value: str) -> None:
        _write(os.path.join(self.path, name), value)

    def pids(self) -> list[int]:
        try:
            with open(self.procs_file) as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def kill_all(self) -> None:
        if self.version == 2 and os.path.exists(os.path.join(self.path, "cgroup.kill")):
            try:
                self.write("cgroup.kill", "1")
                return
            except OSError:
                pass
        for pid in self.pids():
            _signal_if(pid, signal.SIGKILL, self._holds)

    def _holds(self, pid: int) -> bool:
        suffix = ":" + self.relative
        return any(line.endswith(suffix) for line in _read(f"/proc/{pid}/cgroup").splitlines())

    def oom_kills(self) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in _read(os.path.join(self.path, name)).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def remove(self) -> None:
        # Exited processes take a moment to leave the cgroup (usually < 0.3 ms after the
        # sandbox's init was reaped); rmdir fails with EBUSY until then.
        deadline = time.monotonic() + 2.0
        pause = 0.0001
        while True:
            self.kill_all()
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(pause)
                pause = min(pause * 2, 0.02)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _apply_limits(name: str, limits: Limits) -> tuple[list[_Cgroup], list[str], dict[str, str]]:
    """Create the execution's cgroups; whatever they cannot enforce falls back to rlimits.

    Returns the cgroups, prlimit arguments and how each requested limit is enforced."""
    wanted = {
        "memory": limits.memory_limit_mb,
        "pids": limits.pids_limit,
        "cpu": limits.cpu_limit,
    }
    wanted = {controller: value for controller, value in wanted.items() if value is not None}
    cgroups: list[_Cgroup] = []
    enforced: dict[str, str] = {}
    if wanted:
        layout = _cgroup_layout()
        if layout is not None and layout.version == 2:
            cgroups, enforced = _cgroup_v2(layout, name, wanted)
        elif layout is not None:
            cgroups, enforced = _cgroups_v1(layout, name, wanted)

    rlimits: list[str] = []
    if "memory" in wanted and "memory" not in enforced:
        # Address space, not resident memory: an approximation (see sandbox-notes.md).
        rlimits.append(f"--as={wanted['memory'] * 1024 * 1024}")
        enforced["memory"] = "rlimit"
    if "pids" in wanted and "pids" not in enforced:
        # Counts every process of the uid on the host, not only this execution's.
        rlimits.append(f"--nproc={wanted['pids']}")
        enforced["pids"] = "rlimit"
    if "cpu" in wanted and "cpu" not in enforced:
        enforced["cpu"] = "not enforced"
    names = {"memory": "memory_limit_mb", "pids": "pids_limit", "cpu": "cpu_limit"}
    return cgroups, rlimits, {names[c]: how for c, how in enforced.items()}


def _limit_files(controller: str, value: float, version: int) -> list[tuple[str, str]]:
    """(file, value) pairs setting one limit, in the order they must be written."""
    if controller == "memory":
        size = str(int(value) * 1024 * 1024)
        if version == 2:
            return [("memory.max", size), ("memory.swap.max", "0")]
        # memsw (memory + swap) must not be below the memory limit: write it second.
        return [("memory.limit_in_bytes", size), ("memory.memsw.limit_in_bytes", size)]
    if controller == "pids":
        return [("pids.max", str(int(value)))]
    quota = max(1000, int(value * CPU_PERIOD_US))
    if version == 2:
        return [("cpu.max", f"{quota} {CPU_PERIOD_US}")]
    return [("cpu.cfs_period_us", str(CPU_PERIOD_US)), ("cpu.cfs_quota_us", str(quota))]


def _set_limits(cgroup: _Cgroup, controller: str, value: float) -> None:
    files = _limit_files(controller, value, cgroup.version)
    required, optional = files[0], files[1:]
    cgroup.write(*required)
    for name, content in optional:  # e.g. no swap accounting: fine, there is no swap
        if os.path.exists(os.path.join(cgroup.path, name)):
            cgroup.write(name, content)


def _fresh_cgroup(path: str, version: int, relative: str) -> _Cgroup:
    cgroup = _Cgroup(path, version, relative)
    if os.path.isdir(path):
        cgroup.remove()  # left over by a crashed agent: its counters would mislead
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.mkdir(path)
    return cgroup


def _cgroups_v1(layout: _Layout, name: str, wanted: dict) -> tuple[list[_Cgroup], dict]:
    cgroups, enforced = [], {}
    for controller, value in wanted.items():
        parent = layout.parents.get(controller)
        if parent is None:
            continue
        relative = os.path.join(parent[1], name)
        try:
            cgroup = _fresh_cgroup(os.path.join(parent[0], name), 1, relative)
        except OSError:
            continue  # read-only cgroupfs, no permission: rlimits then
        try:
            _set_limits(cgroup, controller, value)
        except OSError:
            cgroup.remove()
            continue
        cgroups.append(cgroup)
        enforced[controller] = "cgroup v1"
    return cgroups, enforced


def _cgroup_v2(layout: _Layout, name: str, wanted: dict) -> tuple[list[_Cgroup], dict]:
    directory, relative = layout.parents["unified"]
    try:
        cgroup = _fresh_cgroup(os.path.join(directory, name), 2, os.path.join(relative, name))
    except OSError:
        return [], {}
    enforced = {}
    for controller, value in wanted.items():
        try:
            _set_limits(cgroup, controller, value)
            enforced[controller] = "cgroup v2"
        except OSError:
            pass  # controller not enabled for us: rlimits then
    return [cgroup], enforced


@dataclass(frozen=True)
class _Layout:
    version: int
    # controller ("memory", "pids", "cpu"; "unified" for v2) -> (directory, relative path)
    # of the cgroup that holds the executions' cgroups.
    parents: dict[str, tuple[str, str]]


def _own_cgroups() -> dict[str, str]:
    """Controller -> the agent's cgroup path, from /proc/self/cgroup ("" = unified)."""
    own = {}
    for line in _read("/proc/self/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            own[controller] = path
    return own


@cache
def _cgroup_layout() -> _Layout | None:
    """Where per-execution cgroups go: under the agent's own cgroup, so that they nest in
    whatever limits the agent itself runs under. None when cgroups are unusable."""
    if os.geteuid() != 0:
        return None  # delegated cgroups for non-root agents are not supported (rlimits)
    try:
        own = _own_cgroups()
    except (OSError, ValueError):
        return None
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        return _layout_v2(own.get("", "/"))
    parents = {}
    for controller in ("memory", "pids", "cpu"):
        mount = os.path.join(CGROUP_ROOT, controller)
        if controller in own and os.path.isdir(mount):
            relative = os.path.join(own[controller], CGROUP_GROUP)
            parents[controller] = (mount + relative, relative)
    return _Layout(1, parents) if parents else None


def _layout_v2(own: str) -> _Layout | None:
    """cgroup v2 allows controllers for child cgroups only in a cgroup without processes
    (except the root). If the agent's cgroup holds the agent, the agent moves itself into
    a leaf <own>/agent first, as systemd's Delegate=yes allows. Not exercised by the tests
    (the test machine is cgroup v1)."""
    base = CGROUP_ROOT + own.rstrip("/")
    group = os.path.join(base, CGROUP_GROUP)
    try:
        available = _read(os.path.join(base, "cgroup.controllers")).split()
        enable = " ".join(f"+{c}" for c in ("memory", "pids", "cpu") if c in available)
        if not enable:
            return None
        try:
            _write(os.path.join(base, "cgroup.subtree_control"), enable)
        except OSError:
            leaf = os.path.join(base, "agent")
            os.makedirs(leaf, exist_ok=True)
            _write(os.path.join(leaf, "cgroup.procs"), str(os.getpid()))
            _write(os.path.join(base, "cgroup.subtree_control"), enable)
        os.makedirs(group, exist_ok=True)
        _write(os.path.join(group, "cgroup.subtree_control"), enable)
    except OSError:
        return None
    relative = os.path.join(own, CGROUP_GROUP)
    return _Layout(2, {"unified": (group, relative)})


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)
