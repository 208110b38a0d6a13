"""The worker agent's loop: small steps (claim, read output, flush, settle, heartbeat,
control) that each return whether they did work, so tests can drive it step by step.

One thread and one selector serve every running command: the selector waits on all
command pipes, each command's pidfd (exit), the transport's wake-up descriptor (new work,
cancellations) and a self-pipe (signals). Everything the agent asks of the control plane
goes through a transport (agent.transport): the database, or HTTP.

Plain Python apart from the transport: an HTTP agent runs without Django."""

import fcntl
import logging
import os
import selectors
import signal
import time
from dataclasses import dataclass, field

from agent.output import OutputCapture
from agent.process import CommandProcess, command_env, remove_kept_workdirs
from agent.sandbox import Limits, SandboxConfig, SandboxError
from agent.spare import SpareShells
from agent.transport import Assignment, Rejected, Transport, TransportError
from telemetry.logs import register_secret
from telemetry.tracing import start_span_in

log = logging.getLogger("hodei.agent")

CONTROL_SECONDS = 0.5
READ_BYTES = 64 * 1024
# A pipe that filled up is read this many times in a row (up to 1 MiB) before the
# selector is asked again, and grown to FAST_PIPE_BYTES.
READS_PER_WAKE = 16
FAST_PIPE_BYTES = 1024 * 1024

# How a run ended, as the agent reports it (workermanager.choices.WORKER_OUTCOMES).
SUCCEEDED, FAILED, TIMED_OUT, CANCELLED = "succeeded", "failed", "timed_out", "cancelled"
# Why the agent kills a run -> (what it reports, the error it gives). "stop" reports
# nothing: the execution was settled elsewhere (declared lost, say).
KILL_OUTCOMES = {
    "timeout": (TIMED_OUT, ""),
    "cancel": (CANCELLED, ""),
    "shutdown": (CANCELLED, "The worker shut down."),
    "stop": (None, ""),
}


@dataclass
class Run:
    assignment: Assignment
    process: CommandProcess
    output: OutputCapture
    deadline: float | None
    reason: str | None = None  # why we are killing it: a key of KILL_OUTCOMES
    open_fds: set = field(default_factory=set)
    grown_fds: set = field(default_factory=set)  # pipes given FAST_PIPE_BYTES
    span: object = None  # the execution.run span, when tracing
    outcome: tuple | None = None  # (status, error) once it ended
    outputs: dict = field(default_factory=dict)  # what it wrote to $HODEI_OUTPUT


@dataclass
class AgentConfig:
    type: str
    name: str = ""
    concurrency: int = 1
    labels: dict = field(default_factory=dict)
    heartbeat_seconds: float = 5.0
    poll_seconds: float = 1.0
    kill_grace_seconds: float = 5.0
    shutdown_grace_seconds: float = 10.0
    log_max_bytes: int = 10 * 1024 * 1024
    log_flush_bytes: int = 64 * 1024
    log_flush_seconds: float = 0.2
    workdir_root: str | None = None
    isolation: str = "sandbox"  # or "none": plain processes of the agent's own user
    sandbox_uid: int = 65534
    sandbox_gid: int = 65534
    # Bash processes kept started for the next commands (agent.spare).
    spare_shells: int = 1

    # field -> the environment variable that sets it (the control plane reads the same
    # variables: both sides must agree on the heartbeat interval, for instance).
    ENV = {
        "heartbeat_seconds": "HODEI_HEARTBEAT_SECONDS",
        "poll_seconds": "HODEI_POLL_SECONDS",
        "kill_grace_seconds": "HODEI_KILL_GRACE_SECONDS",
        "shutdown_grace_seconds": "HODEI_SHUTDOWN_GRACE_SECONDS",
        "log_max_bytes": "HODEI_LOG_MAX_BYTES",
        "log_flush_bytes": "HODEI_LOG_FLUSH_BYTES",
        "log_flush_seconds": "HODEI_LOG_FLUSH_SECONDS",
        "isolation": "HODEI_ISOLATION",
        "sandbox_uid": "HODEI_SANDBOX_UID",
        "sandbox_gid": "HODEI_SANDBOX_GID",
        "spare_shells": "HODEI_SPARE_SHELLS",
    }

    @classmethod
    def from_env(cls, **given) -> "AgentConfig":
        """Defaults, then the environment, then ``given`` (options not None)."""
        values = {}
        for name, variable in cls.ENV.items():
            raw = os.environ.get(variable, "").strip()
            if raw:
                kind = type(cls.__dataclass_fields__[name].default)
                try:
                    values[name] = kind(raw)
                except ValueError:
                    raise ValueError(f"{variable} must be a {kind.__name__}, got {raw!r}") from None
        values.update({k: v for k, v in given.items() if v is not None})
        return cls(**values)

    @property
    def sandbox(self) -> SandboxConfig:
        return SandboxConfig(isolation=self.isolation, uid=self.sandbox_uid, gid=self.sandbox_gid)


class Agent:
    def __init__(self, config: AgentConfig, transport: Transport):
        self.config = config
        self.transport = transport
        self.worker_id: str | None = None
        self.name = config.name
        self.runs: dict = {}  # execution id -> Run
        self.selector = selectors.DefaultSelector()
        self.wake_fd: int | None = None  # the transport's, while registered
        self.stopping_since: float | None = None
        self.stop_reason = ""  # set when the control plane refused this agent
        self.wanted = True  # claim at once on start
        self.last_poll = 0.0
        self.last_heartbeat = 0.0
        self.last_control = 0.0
        self.is_draining = False
        # Output taken from the commands but not yet stored: kept until a store works.
        self.unstored: list = []
        self.spares = SpareShells(
            count=config.spare_shells, workdir_root=config.workdir_root, config=config.sandbox
        )
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))

    # -- lifecycle ---------------------------------------------------------------

    def register(self) -> str:
        registration = self.transport.register(
            type=self.config.type,
            name=self.config.name,
            labels=self.config.labels,
            capacity=self.config.concurrency,
            isolation=self.config.isolation,
        )
        self.worker_id, self.name = registration.worker_id, registration.name
        expected = registration.heartbeat_seconds
        if expected and expected < self.config.heartbeat_seconds:
            # The control plane counts a worker gone after a few of its own intervals: a
            # remote agent configured apart from it keeps to them.
            log.info("heartbeat every %s s, as the control plane expects", expected)
            self.config.heartbeat_seconds = expected
        self._watch_transport()
        self.last_heartbeat = time.monotonic()
        log.info("agent %s registered as worker %s", self.name, self.worker_id)
        return self.worker_id

    def _watch_transport(self) -> None:
        fd = self.transport.fileno()
        if fd == self.wake_fd:
            return
        if self.wake_fd is not None:
            self.selector.unregister(self.wake_fd)
        if fd is not None:
            self.selector.register(fd, selectors.EVENT_READ, ("transport", None))
        self.wake_fd = fd

    def request_stop(self, *_args) -> None:
        """Signal-safe: stop claiming; running commands get the shutdown grace period."""
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> None:
        if self.worker_id is None:
            self.register()
        failures = 0
        try:
            while True:
                try:
                    if self.step():
                        break
                    failures = 0
                except TransportError as exc:
                    # The control plane is away: keep the commands running and their
                    # output buffered, and try again with a growing pause.
                    failures += 1
                    log.warning("control plane unreachable (%s); retrying", exc)
                    self.transport.reset()
                    self.wait_io(timeout=min(0.1 * 2**failures, 5.0))
                    # The failed step never reached its own duties (it fails at its
                    # first request, every time while the link is down): commands'
                    # timeouts still apply, and a stop still ends the agent after its
                    # grace (shutdown() stops what runs and reports what it can).
                    now = time.monotonic()
                    self.enforce_deadlines(now=now)
                    if self.stopping_since is not None and (
                        not self.runs
                        or now - self.stopping_since >= self.config.shutdown_grace_seconds
                    ):
                        break
                except Rejected as exc:
                    self._refused(str(exc))
        finally:
            self.shutdown()

    def _refused(self, reason: str) -> None:
        """The control plane no longer accepts this agent: nothing it reports counts, so
        stop its commands and exit."""
        self.stop_reason = reason or "the control plane refused this agent"
        log.error("agent %s stops: %s", self.name, self.stop_reason)
        self.request_stop()
        for run in self.runs.values():
            self._kill(run, "stop")

    def step(self, timeout: float | None = None) -> bool:
        """One turn of the loop. Returns True once the agent has stopped."""
        now = time.monotonic()
        self.heartbeat(now=now)
        self.control(now=now)
        self.claim(now=now)
        if not self.wanted:  # about to wait: the next command's shell is started now
            self.spares.fill(room=self._free_slots())
        self.wait_io(timeout=self._wait_timeout() if timeout is None else timeout)
        now = time.monotonic()
        self.enforce_deadlines(now=now)
        self.flush(now=now)
        self.settle_finished()
        return self._shutdown_step(now=time.monotonic())

    def _wait_timeout(self) -> float:
        timeout = min(self.config.poll_seconds, CONTROL_SECONDS, self.config.log_flush_seconds)
        if self.wanted and self._free_slots():
            timeout = 0.0
        return timeout

    def _shutdown_step(self, *, now: float) -> bool:
        if self.stopping_since is None:
            return False
        if not self.runs:
            return True
        if now - self.stopping_since >= self.config.shutdown_grace_seconds:
            for run in self.runs.values():
                self._kill(run, "shutdown")
        return False

    def shutdown(self) -> None:
        for run in list(self.runs.values()):
            self._kill(run, "shutdown")
        deadline = time.monotonic() + self.config.kill_grace_seconds + 1
        while self.runs and time.monotonic() < deadline:
            self.wait_io(timeout=0.1)
            self.enforce_deadlines(now=time.monotonic())
            self._best_effort(self.settle_finished)
        self._best_effort(lambda: self.flush(now=time.monotonic(), final=True))
        self.spares.close()
        remove_kept_workdirs()
        if self.worker_id is not None and not self.stop_reason:
            self._best_effort(self.transport.go_offline)
            log.info("agent %s stopped", self.name)
        self.transport.close()

    def _best_effort(self, step) -> None:
        """On the way out a control plane that is away (or refuses us) must not keep the
        agent from ending its commands and exiting."""
        try:
            step()
        except (TransportError, Rejected) as exc:
            log.warning("while stopping: %s", exc)

    # -- steps ---------------------------------------------------------------------

    def heartbeat(self, *, now: float) -> bool:
        if now - self.last_heartbeat < self.config.heartbeat_seconds:
            return False
        self.last_heartbeat = now
        reply = self.transport.heartbeat(running=[str(i) for i in self.runs])
        self.is_draining = reply.draining
        if reply.stop_reason:
            self._refused(reply.stop_reason)
        self._watch_transport()
        return True

    def control(self, *, now: float) -> bool:
        """Kill what the control plane no longer wants running: cancelled executions and
        ones declared lost or settled elsewhere. Checked every half second, and at once
        when a cancel notification arrives."""
        if not self.runs or now - self.last_control < CONTROL_SECONDS:
            return False
        self.last_control = now
        running_ids = [rid for rid, run in self.runs.items() if run.reason is None]
        if not running_ids:
            return False
        verdicts = self.transport.control(running=running_ids)
        for execution_id, reason in verdicts.items():
            self._kill(self.runs[execution_id], reason)
        return bool(verdicts)

    def _free_slots(self, *, ending: int = 0) -> int:
        """Slots free now, or once ``ending`` of the runs are forgotten."""
        if self.stopping_since is not None or self.is_draining:
            return 0
        return self.config.concurrency - len(self.runs) + ending

    def claim(self, *, now: float) -> int:
        free = self._free_slots()
        if free <= 0:
            if self.wanted and self.stopping_since is None and self.transport.cheap_claims:
                # A claim made for it before it began to drain (an HTTP long-poll's
                # answer) is its to run: drained agents finish what they have. A
                # stopping agent leaves it to go_offline, which has it retried.
                self.wanted = False
                claimed = self.transport.claim(limit=0)
                for assignment in claimed:
                    self._start(assignment)
                return len(claimed)
            # Otherwise a wake-up that came while full is kept for when a slot frees.
            return 0
        if not self.wanted and now - self.last_poll < self.config.poll_seconds:
            return 0
        self.last_poll = now
        claimed = self.transport.claim(limit=free)
        # Keep claiming while there was more work than room; otherwise wait to be woken.
        self.wanted = len(claimed) == free
        for assignment in claimed:
            self._start(assignment)
        if self.wanted:
            # More may be queued than this agent has room for, announced to it alone:
            # the others are told (once its commands have started).
            self.transport.pass_on(backlog=True)
        return len(claimed)

    def _start(self, assignment: Assignment) -> None:
        secrets = list(assignment.secret_env.values())
        for value in secrets:
            register_secret(value)
        output = OutputCapture(
            max_bytes=self.config.log_max_bytes,
            flush_bytes=self.config.log_flush_bytes,
            flush_seconds=self.config.log_flush_seconds,
            secrets=secrets,
        )
        try:
            process = CommandProcess(
                execution_id=assignment.id,
                command=assignment.command,
                type=assignment.type,
                env=command_env(assignment, config=self.config.sandbox),
                workdir_root=self.config.workdir_root,
                config=self.config.sandbox,
                spares=self.spares,
                network=assignment.network,
                limits=Limits(
                    memory_limit_mb=assignment.memory_limit_mb,
                    pids_limit=assignment.pids_limit,
                    cpu_limit=assignment.cpu_limit,
                ),
            )
        except (OSError, ValueError, SandboxError) as exc:
            output.system(f"[hodei] could not start the command: {exc}")
            self._store([(assignment.id, c) for c in output.take(final=True)])
            self.transport.settle(
                execution_id=assignment.id,
                status=FAILED,
                exit_code=None,
                error=f"Could not start the command: {exc}",
                log_bytes=0,
                log_truncated=False,
                outputs={},
            )
            return
        timeout = assignment.timeout_seconds
        run = Run(
            assignment=assignment,
            process=process,
            output=output,
            deadline=time.monotonic() + timeout if timeout else None,
            span=start_span_in(
                assignment.trace_parent, "execution.run", **{"hodei.pid": process.pid}
            ),
        )
        log.info("execution started (pid %s)", process.pid, extra=self._log_ids(assignment))
        for stream, pipe in (("stdout", process.popen.stdout), ("stderr", process.popen.stderr)):
            self.selector.register(pipe.fileno(), selectors.EVENT_READ, ("pipe", (run, stream)))
            run.open_fds.add(pipe.fileno())
        self.selector.register(process.pidfd, selectors.EVENT_READ, ("exit", run))
        self.runs[assignment.id] = run

    def wait_io(self, *, timeout: float) -> bool:
        did = False
        for key, _ in self.selector.select(timeout):
            kind, payload = key.data
            did = True
            if kind == "pipe":
                run, stream = payload
                self._read(run, stream, key.fd)
            elif kind == "exit":
                self.selector.unregister(key.fd)
                payload.process.poll()
            elif kind == "transport":
                kinds = self.transport.wakeups()
                if "cancel" in kinds:
                    self.last_control = 0.0
                if "first" in kinds and not self._free_slots():
                    # Work this agent was asked first for, and it has no room: every
                    # agent of the type is told, and one with room takes it.
                    self.transport.pass_on()
                if kinds & {"work", "first"}:
                    self.wanted = True
                self._watch_transport()
            elif kind == "wake":
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
        return did

    def _read(self, run: Run, stream: str, fd: int) -> None:
        for _ in range(READS_PER_WAKE):
            try:
                data = os.read(fd, READ_BYTES)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.selector.unregister(fd)
                run.open_fds.discard(fd)
                return
            run.output.feed(stream, data)
            if len(data) < READ_BYTES:
                return
            if fd not in run.grown_fds:
                # A full read: this command writes fast. A bigger pipe lets it go on
                # writing while the agent stores what it read (instead of both taking
                # turns); slow commands keep the default pipe (kernel memory).
                run.grown_fds.add(fd)
                try:
                    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, FAST_PIPE_BYTES)
                except (OSError, AttributeError):
                    pass

    def enforce_deadlines(self, *, now: float) -> None:
        for run in self.runs.values():
            if run.reason is None and run.deadline is not None and now >= run.deadline:
                self._kill(run, "timeout")
            sent = run.process.kill_sent_at
            if sent is not None and now - sent >= self.config.kill_grace_seconds:
                run.process.kill()

    def _kill(self, run: Run, reason: str) -> None:
        if run.reason is None:
            run.reason = reason
            if reason != "stop":
                run.output.system(f"[hodei] stopping the command: {reason}")
        run.process.terminate()

    def flush(self, *, now: float, final: bool = False) -> int:
        chunks = []
        for run in self.runs.values():
            if final or run.output.due(now=now):
                chunks.extend((run.assignment.id, c) for c in run.output.take(final=final, now=now))
        self._store(chunks)
        return len(chunks)

    def _store(self, chunks: list) -> None:
        """Store chunks at once, with any left over from a failed attempt first."""
        if self.stop_reason:  # refused: nothing it sends would be accepted
            self.unstored = []
            return
        self.unstored.extend(chunks)
        if self.unstored:
            self.transport.store_logs(self.unstored)
            self.unstored = []

    def settle_finished(self) -> int:
        """Report every command that has exited and whose output is fully read."""
        done = []
        for run in self.runs.values():
            if run.process.poll() is None:
                continue
            if run.open_fds:
                # Exited, but a pipe is still open: a leftover child holds it. Drain what
                # is there now, then kill everything of it so the pipe closes.
                run.process.kill()
                stdout_fd = run.process.popen.stdout.fileno()
                for fd in list(run.open_fds):
                    self._read(run, "stdout" if fd == stdout_fd else "stderr", fd)
                if run.open_fds:
                    continue
            done.append(run)
        if done:
            self._settle(done)
        return len(done)

    def _log_ids(self, assignment: Assignment) -> dict:
        return {
            "execution_id": assignment.id,
            "job_id": assignment.job_id or None,
            "worker_id": self.worker_id,
        }

    def _outcome(self, run: Run, code: int) -> tuple[str | None, str]:
        """What to report of a run that ended: how, and why if not by its exit code."""
        if run.reason is not None:
            return KILL_OUTCOMES[run.reason]
        if code == 0:
            return SUCCEEDED, ""
        if run.process.oom_killed:
            limit = run.assignment.memory_limit_mb
            error = f"Killed: it exceeded its memory limit ({limit} MiB)."
            run.output.system(f"[hodei] {error}")
            return FAILED, error
        return FAILED, ""

    def _settle(self, runs: list[Run]) -> None:
        """Report runs that ended, together: their last output in one store, then their
        outcomes in one report (one transaction for a database agent)."""
        chunks, reports = [], []
        for run in runs:
            assignment, code = run.assignment, run.process.returncode
            if run.outcome is None:  # decided once: a failed report is sent again as is
                run.outcome = self._outcome(run, code)
                run.outputs, warnings = run.process.outputs()
                for warning in warnings:
                    run.output.system(f"[hodei] warning: {warning}")
            status, error = run.outcome
            chunks += [(assignment.id, c) for c in run.output.take(final=True)]
            if status is not None:
                reports.append(
                    {
                        "execution_id": assignment.id,
                        "status": status,
                        "exit_code": code,
                        "error": error,
                        "log_bytes": run.output.seen_bytes,
                        "log_truncated": run.output.truncated,
                        "outputs": run.outputs,
                    }
                )
        # Every chunk is stored before the outcome (by the report's own request where
        # the transport can): a reader that sees a finished execution has seen all of
        # its output. Chunks not stored stay for the next attempt.
        if reports and not self.stop_reason:
            self.unstored.extend(chunks)
            free_after = self._free_slots(ending=len(runs))
            self.transport.settle_many(reports, free_after=free_after, chunks=self.unstored)
            self.unstored = []
        else:
            self._store(chunks)
        # Reported: only now may the runs be forgotten (a failed report is retried).
        for run in runs:
            assignment, code = run.assignment, run.process.returncode
            status = run.outcome[0]
            if run.span is not None:
                run.span.set_attribute("hodei.exit_code", -1 if code is None else code)
                run.span.set_attribute("hodei.status", status or "settled elsewhere")
                run.span.end()
                run.span = None
            log.info(
                "execution %s, exit code %s",
                status or "settled elsewhere",
                code,
                extra=self._log_ids(assignment),
            )
            try:
                self.selector.unregister(run.process.pidfd)
            except KeyError:
                pass
            run.process.close()
            del self.runs[assignment.id]
        # Claim again at once only where there may be work: the last claim filled every
        # slot, or a wake-up came meanwhile (``wanted``); an idle queue is not asked
        # after every run. A transport whose claims cost nothing until work comes (an
        # HTTP long-poll) is given the freed slots at once.
        if self.transport.cheap_claims and self._free_slots():
            self.wanted = True
