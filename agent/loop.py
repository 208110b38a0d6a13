"""The worker agent's loop: small steps (claim, read output, flush, settle, heartbeat,
control) that each return whether they did work, so tests can drive it step by step.

One thread and one selector serve every running command: the selector waits on all
command pipes, each command's pidfd (exit), the LISTEN connection (new work) and a
self-pipe (signals)."""

import logging
import os
import selectors
import signal
import socket
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, connection

from agent.output import OutputCapture
from agent.process import CommandProcess, command_env
from hodei import __version__
from hodei.lib import clock
from hodei.lib.listen import Listener
from scheduler.choices import WorkerStatus
from scheduler.models import Worker
from scheduler.services import worker_register
from telemetry import metrics
from telemetry.logs import register_secret
from telemetry.tracing import continue_trace, start_span_in
from workermanager import services as wm
from workermanager.choices import ExecutionStatus, LogStream
from workermanager.models import Execution
from workermanager.notify import CANCEL_CHANNEL, CHANNEL

log = logging.getLogger("hodei.agent")

CONTROL_SECONDS = 0.5
READ_BYTES = 64 * 1024


@dataclass
class Run:
    execution: Execution
    process: CommandProcess
    output: OutputCapture
    deadline: float | None
    reason: str | None = None  # why we are killing it: timeout | cancel | lost | shutdown
    open_fds: set = field(default_factory=set)
    span: object = None  # the execution.run span, when tracing


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

    @classmethod
    def from_settings(cls, **overrides) -> "AgentConfig":
        base = dict(
            heartbeat_seconds=settings.HODEI_HEARTBEAT_SECONDS,
            poll_seconds=settings.HODEI_POLL_SECONDS,
            kill_grace_seconds=settings.HODEI_KILL_GRACE_SECONDS,
            shutdown_grace_seconds=settings.HODEI_SHUTDOWN_GRACE_SECONDS,
            log_max_bytes=settings.HODEI_LOG_MAX_BYTES,
            log_flush_bytes=settings.HODEI_LOG_FLUSH_BYTES,
            log_flush_seconds=settings.HODEI_LOG_FLUSH_SECONDS,
        )
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


class Agent:
    def __init__(self, config: AgentConfig):
        self.config = config
        self.worker: Worker | None = None
        self.runs: dict = {}  # execution id -> Run
        self.selector = selectors.DefaultSelector()
        self.listener = Listener([CHANNEL, CANCEL_CHANNEL])
        self.stopping_since: float | None = None
        self.wanted = True  # claim at once on start
        self.last_poll = 0.0
        self.last_heartbeat = 0.0
        self.last_control = 0.0
        self.is_draining = False
        # Output taken from the commands but not yet stored: kept until an INSERT works.
        self.unstored: list = []
        # Metrics are pushed with the heartbeat, not one upsert per execution.
        metrics.buffer.batched = True
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))

    # -- lifecycle ---------------------------------------------------------------

    def register(self) -> Worker:
        self.worker, _ = worker_register(
            type=self.config.type,
            name=self.config.name,
            labels=self.config.labels,
            capacity=self.config.concurrency,
            hostname=socket.gethostname(),
            version=__version__,
            pid=os.getpid(),
        )
        if self.listener.start():
            self.selector.register(self.listener.fileno(), selectors.EVENT_READ, ("listen", None))
        self.last_heartbeat = time.monotonic()
        log.info("agent %s registered as worker %s", self.worker.name, self.worker.id)
        return self.worker

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
        if self.worker is None:
            self.register()
        failures = 0
        try:
            while True:
                try:
                    if self.step():
                        break
                    failures = 0
                except DatabaseError as exc:
                    # The database is away: keep the commands running and their output
                    # buffered, and try again with a growing pause.
                    failures += 1
                    log.warning("database error in agent loop (%s); retrying", exc)
                    connection.close()
                    self.wait_io(timeout=min(0.1 * 2**failures, 5.0))
        finally:
            self.shutdown()

    def step(self, timeout: float | None = None) -> bool:
        """One turn of the loop. Returns True once the agent has stopped."""
        now = time.monotonic()
        self.heartbeat(now=now)
        self.control(now=now)
        self.claim(now=now)
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
            self.settle_finished()
        self.flush(now=time.monotonic(), final=True)
        metrics.buffer.flush()
        if self.worker is not None:
            self.worker.refresh_from_db()
            self.worker.go_offline(now=clock.now())
            log.info("agent %s stopped", self.worker.name)
        self.listener.close()

    # -- steps ---------------------------------------------------------------------

    def heartbeat(self, *, now: float) -> bool:
        if now - self.last_heartbeat < self.config.heartbeat_seconds:
            return False
        self.last_heartbeat = now
        self.worker.refresh_from_db(fields=["status"])
        self.is_draining = self.worker.status == WorkerStatus.DRAINING
        self.worker.heartbeat(now=clock.now())
        metrics.buffer.flush()
        # Agents also reap dead peers, so a crashed agent's work is retried within a few
        # heartbeats even between the qcluster's once-a-minute maintenance runs.
        wm.worker_reap()
        if not self.listener.alive and self.listener.start():
            self.selector.register(self.listener.fileno(), selectors.EVENT_READ, ("listen", None))
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
        rows = Execution.objects.filter(id__in=running_ids).values_list(
            "id", "status", "cancel_requested"
        )
        killed = False
        for execution_id, status, cancel_requested in rows:
            run = self.runs[execution_id]
            if status != ExecutionStatus.RUNNING:
                self._kill(run, "lost")
                killed = True
            elif cancel_requested:
                self._kill(run, "cancel")
                killed = True
        return killed

    def _free_slots(self) -> int:
        if self.stopping_since is not None or self.is_draining:
            return 0
        return self.config.concurrency - len(self.runs)

    def claim(self, *, now: float) -> int:
        free = self._free_slots()
        if free <= 0:
            return 0
        if not self.wanted and now - self.last_poll < self.config.poll_seconds:
            return 0
        self.last_poll = now
        claimed = Execution.claim(worker=self.worker, limit=free, now=clock.now())
        # Keep claiming while there was more work than room; otherwise wait to be woken.
        self.wanted = len(claimed) == free
        for execution in claimed:
            self._start(execution)
        return len(claimed)

    def _start(self, execution: Execution) -> None:
        job = execution.job
        secret_env = job.secret_env if job else {}
        for value in secret_env.values():
            register_secret(value)
        ids = self._log_ids(execution)
        with continue_trace(
            execution.trace_parent, "execution.claim", **{"hodei.worker": self.worker.name}
        ):
            pass
        output = OutputCapture(
            max_bytes=self.config.log_max_bytes,
            flush_bytes=self.config.log_flush_bytes,
            flush_seconds=self.config.log_flush_seconds,
            secrets=list(secret_env.values()),
        )
        try:
            process = CommandProcess(
                command=execution.command,
                type=execution.type,
                env=command_env(
                    execution=execution,
                    job_env=job.env if job else {},
                    secret_env=secret_env,
                ),
                workdir_root=self.config.workdir_root,
            )
        except (OSError, ValueError) as exc:
            output.system(f"[hodei] could not start the command: {exc}")
            self._store([(execution.id, c) for c in output.take(final=True)])
            wm.execution_settle(
                execution=execution,
                worker=self.worker,
                outcome=ExecutionStatus.FAILED,
                error=f"Could not start the command: {exc}",
                exit_code=None,
                log_bytes=0,
                log_truncated=False,
            )
            return
        deadline = (
            time.monotonic() + execution.timeout_seconds if execution.timeout_seconds else None
        )
        run = Run(
            execution=execution,
            process=process,
            output=output,
            deadline=deadline,
            span=start_span_in(
                execution.trace_parent, "execution.run", **{"hodei.pid": process.pid}
            ),
        )
        log.info("execution started (pid %s)", process.pid, extra=ids)
        for stream, pipe in (
            (LogStream.STDOUT, process.popen.stdout),
            (LogStream.STDERR, process.popen.stderr),
        ):
            self.selector.register(pipe.fileno(), selectors.EVENT_READ, ("pipe", (run, stream)))
            run.open_fds.add(pipe.fileno())
        if process.pidfd is not None:
            self.selector.register(process.pidfd, selectors.EVENT_READ, ("exit", run))
        self.runs[execution.id] = run

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
            elif kind == "listen":
                for channel, _payload in self.listener.drain():
                    if channel == CANCEL_CHANNEL:
                        self.last_control = 0.0
                    else:
                        self.wanted = True
                if not self.listener.alive:
                    self.selector.unregister(key.fd)
            elif kind == "wake":
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
        return did

    def _read(self, run: Run, stream: str, fd: int) -> None:
        try:
            data = os.read(fd, READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            run.output.feed(stream, data)
        else:
            self.selector.unregister(fd)
            run.open_fds.discard(fd)

    def enforce_deadlines(self, *, now: float) -> None:
        for run in self.runs.values():
            if run.reason is None and run.deadline is not None and now >= run.deadline:
                self._kill(run, "timeout")
            sent = run.process.kill_sent_at
            if sent is not None and now - sent >= self.config.kill_grace_seconds:
                run.process.signal_group(signal.SIGKILL)

    def _kill(self, run: Run, reason: str) -> None:
        if run.reason is None:
            run.reason = reason
            if reason in ("timeout", "cancel", "shutdown"):
                run.output.system(f"[hodei] stopping the command: {reason}")
        run.process.terminate()

    def flush(self, *, now: float, final: bool = False) -> int:
        chunks = []
        for run in self.runs.values():
            if final or run.output.due(now=now):
                chunks.extend((run.execution.id, c) for c in run.output.take(final=final, now=now))
        self._store(chunks)
        return len(chunks)

    def _store(self, chunks: list) -> None:
        """Store chunks in one INSERT, with any left over from a failed attempt first."""
        self.unstored.extend(chunks)
        if self.unstored:
            wm.execution_logs_store(chunks=self.unstored)
            stored = sum(len(chunk.message.encode()) for _, chunk in self.unstored)
            metrics.inc("hodei_log_bytes_stored_total", stored)
            self.unstored = []

    def settle_finished(self) -> int:
        """Report every command that has exited and whose output is fully read."""
        done = []
        for run in self.runs.values():
            if run.process.poll() is None:
                continue
            if run.open_fds:
                # Exited, but a pipe is still open: a leftover child holds it. Drain what
                # is there now, then kill the group so the pipe closes.
                run.process.signal_group(signal.SIGKILL)
                stdout_fd = run.process.popen.stdout.fileno()
                for fd in list(run.open_fds):
                    stream = LogStream.STDOUT if fd == stdout_fd else LogStream.STDERR
                    self._read(run, stream, fd)
                if run.open_fds:
                    continue
            done.append(run)
        for run in done:
            self._settle(run)
        return len(done)

    def _log_ids(self, execution: Execution) -> dict:
        return {
            "execution_id": execution.id,
            "job_id": execution.job_id,
            "worker_id": self.worker.id if self.worker else None,
        }

    def _settle(self, run: Run) -> None:
        execution, code = run.execution, run.process.returncode
        # Every chunk is stored before the outcome: a reader that sees a finished
        # execution has seen all of its output.
        self._store([(execution.id, c) for c in run.output.take(final=True)])
        outcome, error = {
            "timeout": (ExecutionStatus.TIMED_OUT, ""),
            "cancel": (ExecutionStatus.CANCELLED, ""),
            "shutdown": (ExecutionStatus.CANCELLED, "The worker shut down."),
            "lost": (None, ""),
        }.get(run.reason, (None, ""))
        if outcome is None and run.reason is None:
            outcome = ExecutionStatus.SUCCEEDED if code == 0 else ExecutionStatus.FAILED
        if run.span is not None:
            run.span.set_attribute("hodei.exit_code", -1 if code is None else code)
            run.span.set_attribute("hodei.status", str(outcome or "lost"))
            run.span.end()
        log.info(
            "execution %s, exit code %s",
            outcome or "lost (settled elsewhere)",
            code,
            extra=self._log_ids(execution),
        )
        if outcome is not None:
            wm.execution_settle(
                execution=execution,
                worker=self.worker,
                outcome=outcome,
                exit_code=code,
                error=error,
                log_bytes=run.output.seen_bytes,
                log_truncated=run.output.truncated,
            )
        if run.process.pidfd is not None:
            try:
                self.selector.unregister(run.process.pidfd)
            except KeyError:
                pass
        run.process.close()
        del self.runs[execution.id]
        if self._free_slots():
            self.wanted = True
