"""What agents ask of the control plane, whatever the transport: the database agent
(``agent.transport_db``) calls these functions in its own process, the HTTP endpoints
under ``/api/v1/agent/`` call them for remote agents. One owner of registration,
claim, heartbeat, control, log storage and settlement; two transports."""

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction

from hodei.exceptions import Forbidden, InvalidInput
from hodei.lib import clock
from hodei.lib.secrets import decrypt_env
from orchestrator.choices import Network
from orchestrator.models import Job
from workermanager import credentials, outbox, services, workers
from workermanager.announcements import announcements
from workermanager.choices import ExecutionStatus, WorkerStatus
from workermanager.models import Execution, RegistrationToken, Worker, WorkerCredential

# The longest a claim waits for work (an HTTP long-poll).
CLAIM_WAIT_MAX_SECONDS = 30.0
# An execution claimed for a worker this long ago that its agent does not say it runs
# was never received (longer than any claim's answer can take to arrive).
ORPHAN_GRACE_SECONDS = 2 * CLAIM_WAIT_MAX_SECONDS


def assignments(executions: list[Execution]) -> list[dict]:
    """What an agent needs to run each claimed execution, as JSON-ready dicts (the
    agent's ``Assignment``). Secret values travel only here, to the worker that runs
    the execution."""
    # Decrypted here, for the agent that runs them, and nowhere else: as the claim read
    # them (stored_secret_env), or else read now.
    stored = {e.job_id: e.stored_secret_env for e in executions if hasattr(e, "stored_secret_env")}
    unread = {e.job_id for e in executions if e.job_id and e.job_id not in stored}
    if unread:
        stored.update(Job.objects.filter(pk__in=unread).values_list("pk", "secret_env"))
    secrets = {pk: decrypt_env(value) for pk, value in stored.items() if value}
    return [
        {
            "id": str(e.id),
            "command": e.command,
            "type": e.type,
            "env": e.env,
            "secret_env": (secrets.get(e.job_id) or {}) if e.with_secrets else {},
            "timeout_seconds": e.timeout_seconds,
            "attempt": e.attempt,
            "job_id": str(e.job_id or ""),
            "trace_parent": e.trace_parent,
            "network": e.network != Network.NONE,
            "memory_limit_mb": e.memory_limit_mb,
            "pids_limit": e.pids_limit,
            "cpu_limit": e.cpu_limit,
        }
        for e in executions
    ]


@transaction.atomic
def agent_register(
    *,
    registration_token: RegistrationToken | None = None,
    credential: WorkerCredential | None = None,
    type: str = "",
    name: str = "",
    labels: dict | None = None,
    capacity: int = 1,
    hostname: str = "",
    version: str = "",
    pid: int | None = None,
    isolation: str = "",
) -> tuple[Worker, str]:
    """Register an HTTP agent, with a registration token (a new credential is issued,
    replacing any the worker of that name had) or with its worker credential (a managed
    worker, or an agent that kept its credential: it keeps it). Returns the worker and
    the new raw credential ("" when the agent registered with its credential)."""
    labels = dict(labels or {})
    if credential is not None:
        worker = credential.worker
        for field, given in (("name", name), ("type", type)):
            if given and given != getattr(worker, field):
                raise Forbidden(
                    f"This credential is worker {worker.name}'s (type {worker.type}); it "
                    f"cannot register {field} {given!r}."
                )
        type, name = worker.type, worker.name
    else:
        if registration_token.worker_type:
            if type and type != registration_token.worker_type:
                raise Forbidden(
                    f"This registration token registers agents of type "
                    f"{registration_token.worker_type!r} only, not {type!r}."
                )
            type = registration_token.worker_type
        if not type:
            raise InvalidInput("A worker type is required.", fields={"type": ["Required."]})
        if name and Worker.objects.filter(name=name).exclude(type=type).exists():
            # Registering under a name takes that worker over (its credential is
            # replaced): never one of another type than the token allows.
            raise Forbidden(f"A worker named {name!r} of another type exists: choose another name.")
        # The operator's labels win over the agent's own.
        labels.update(registration_token.labels)
        if not registration_token.use(now=clock.now()):
            problem = registration_token.problem(now=clock.now())
            raise credentials.Refused(problem or "The registration token cannot be used.")
    worker, _ = workers.worker_register(
        type=type,
        name=name,
        labels=labels,
        capacity=capacity,
        hostname=hostname,
        version=version,
        pid=pid,
        isolation=isolation or Worker._meta.get_field("isolation").default,
    )
    if credential is not None:
        return worker, ""
    return worker, credentials.worker_credential_issue(
        worker=worker, registration_token=registration_token
    )


def agent_claim(*, worker: Worker, limit: int) -> list[dict]:
    """Claim up to ``limit`` queued executions for ``worker``, if it is online (a
    draining agent asks for none: its heartbeat told it to drain; an offline one, or
    one whose operator drained it during a long-poll, gets none)."""
    if limit <= 0:
        return []
    # only_online: the worker's row stays locked until the claim commits: a go_offline
    # (or reaper) that changes its status waits, then sees what was claimed and loses
    # it; a claim after it sees the worker offline and takes nothing. Nothing is ever
    # left running on a worker that has gone.
    claimed = services.executions_claim(worker=worker, limit=limit, only_online=True)
    return assignments(claimed)


_long_polls: threading.BoundedSemaphore | None = None
_long_polls_lock = threading.Lock()


def _long_poll_slot() -> bool:
    """Take one of this process's long-poll slots (HODEI_AGENT_LONG_POLLS): a waiting
    claim holds a web thread, so at most that many wait at once and the others answer
    at once (their agents poll instead). The service never runs out of threads."""
    global _long_polls
    with _long_polls_lock:
        if _long_polls is None:
            _long_polls = threading.BoundedSemaphore(settings.HODEI_AGENT_LONG_POLLS)
    return _long_polls.acquire(blocking=False)


def agent_claim_wait(
    *,
    worker: Worker,
    limit: int,
    wait_seconds: float,
    still_allowed: Callable[[], bool] = lambda: True,
) -> list[dict]:
    """Claim up to ``limit`` executions for ``worker``; if there are none, wait up to
    ``wait_seconds`` (at most CLAIM_WAIT_MAX_SECONDS) and claim as soon as work of its
    type is queued. Returns [] when the time is up.

    On PostgreSQL the wait is for a NOTIFY on the channel the database agents listen
    on, received by this process's one listening connection (``announcements``; never
    Django's, DESIGN.md), so work is handed over milliseconds after it is queued; the
    claim is also tried again every HODEI_POLL_SECONDS, as the database agents poll,
    for retries whose delay ran out (no NOTIFY marks that). On SQLite there is no
    NOTIFY: it polls. ``still_allowed`` is asked before every claim: a credential
    revoked meanwhile claims nothing more."""
    wait_seconds = min(max(wait_seconds, 0.0), CLAIM_WAIT_MAX_SECONDS)
    if wait_seconds == 0 or limit <= 0 or not _long_poll_slot():
        return agent_claim(worker=worker, limit=limit) if still_allowed() else []
    deadline = time.monotonic() + wait_seconds
    try:
        while still_allowed():
            # The mark before the claim: work queued after the claim looked wakes it.
            mark = announcements.mark()
            claimed = agent_claim(worker=worker, limit=limit)
            remaining = deadline - time.monotonic()
            if claimed or remaining <= 0:
                return claimed
            announcements.wait(
                mark,
                worker_type=worker.type,
                seconds=min(remaining, settings.HODEI_POLL_SECONDS),
            )
        return []
    finally:
        _long_polls.release()


def agent_heartbeat(*, worker: Worker, running: list[str] | None = None) -> dict:
    """Record that ``worker`` is alive; tell it whether it drains and (given what it
    runs) which of its commands to kill (``agent_control``). Heartbeats also reap
    silent peers, so a crashed agent's work is retried within a few heartbeats even
    between the maintenance task's runs."""
    now = clock.now()
    worker.heartbeat(now=now)
    workers.workers_reap()
    worker.refresh_from_db(fields=["status"])
    reply = {"draining": worker.status == WorkerStatus.DRAINING}
    if running is not None:
        # What the control plane believes this worker runs but its agent does not: a
        # claim whose answer never reached it (the connection dropped after the commit).
        # Nobody would ever report those: they are lost, and retried. The grace covers
        # an answer still on its way.
        services.executions_lose(
            worker=worker,
            now=now,
            reason=f"Worker {worker.name} never received it (its claim's answer was lost).",
            started_before=now - timedelta(seconds=ORPHAN_GRACE_SECONDS),
            keep=running,
        )
        reply["control"] = agent_control(worker=worker, running=running)
    return reply


def agent_control(*, worker: Worker, running: list[str]) -> dict[str, str]:
    """Which of ``running`` to kill: "cancel" (an operator asked) or "stop" (no longer
    this worker's to run: declared lost, or settled elsewhere)."""
    if not running:
        return {}
    rows = Execution.objects.filter(id__in=running).values_list(
        "id", "status", "cancel_requested", "worker_id"
    )
    found = {str(i): (status, cancel, owner) for i, status, cancel, owner in rows}
    out = {}
    for execution_id in running:
        status, cancel_requested, owner = found.get(execution_id, (None, False, None))
        if status != ExecutionStatus.RUNNING or owner != worker.pk:
            out[execution_id] = "stop"
        elif cancel_requested:
            out[execution_id] = "cancel"
    return out


def agent_store_logs(*, worker: Worker, chunks: list) -> int:
    """Store output chunks ((execution id, chunk) pairs) of executions ``worker`` runs or
    ran; chunks of other executions are refused (Forbidden: 403 over HTTP)."""
    ids = {str(execution_id) for execution_id, _ in chunks}
    owned = {
        str(i)
        for i in Execution.objects.filter(id__in=ids, worker=worker).values_list("id", flat=True)
    }
    if ids - owned:
        raise Forbidden(f"Not this worker's executions: {', '.join(sorted(ids - owned))}.")
    return services.execution_logs_store(chunks=chunks)


def agent_settle(
    *,
    worker: Worker,
    execution_id: str,
    status: str,
    exit_code: int | None,
    error: str,
    log_bytes: int,
    log_truncated: bool,
    outputs: dict[str, str] | None = None,
) -> bool:
    """Record how a run of ``worker`` ended (and what it output for the jobs after it).
    False when it had been settled meanwhile (a late report after the execution was
    declared lost changes nothing)."""
    report = {
        "execution_id": execution_id,
        "status": status,
        "exit_code": exit_code,
        "error": error,
        "log_bytes": log_bytes,
        "log_truncated": log_truncated,
        "outputs": outputs or {},
    }
    return agent_settle_many(worker=worker, reports=[report])[0]


def agent_settle_many(*, worker: Worker, reports: list[dict]) -> list[bool]:
    """``agent_settle`` for every run of ``worker`` that ended in one turn of its loop,
    all or nothing (one statement or one transaction): whether each report was recorded
    (False: settled meanwhile). If any is of an execution that is not the worker's, none
    is recorded (Forbidden)."""
    return [recorded for recorded, _ in agent_settle_reporting(worker=worker, reports=reports)]


def agent_settle_reporting(*, worker: Worker, reports: list[dict]) -> list[tuple[bool, str]]:
    """``agent_settle_many``, and each execution's status now (what the answer to the
    agent tells it): the settled ones' from the settlement itself, so only a late
    report's is read. When every run succeeded, usually one statement
    (``services.executions_settle_alone``); otherwise one transaction."""
    reports = [{**r, "execution_id": str(uuid.UUID(str(r["execution_id"])))} for r in reports]
    settled = services.executions_settle_alone(worker=worker, reports=reports)
    if settled is None:
        return _settle_reporting_in_transaction(worker=worker, reports=reports)
    return _reporting(worker=worker, reports=reports, settled=settled)


@transaction.atomic
def _settle_reporting_in_transaction(*, worker: Worker, reports: list[dict]):
    settled = services.executions_settle(worker=worker, reports=reports)
    return _reporting(worker=worker, reports=reports, settled=settled)


def _reporting(*, worker: Worker, reports: list[dict], settled: list[Execution]):
    """Each report: whether it was recorded, and its execution's status now. Forbidden
    if one is of an execution that is not ``worker``'s (in the transaction, nothing of
    the batch is then recorded)."""
    moved = {str(e.pk): e.status for e in settled}
    late = {r["execution_id"] for r in reports} - moved.keys()
    current = {}
    if late:
        # Rare (a late report): only then look at what the others are.
        current = {
            str(pk): status
            for pk, status in Execution.objects.filter(pk__in=late, worker=worker).values_list(
                "pk", "status"
            )
        }
        if late - current.keys():
            # The same answer whether it exists or not: a worker learns nothing of others.
            missing = ", ".join(sorted(late - current.keys()))
            raise Forbidden(f"Execution {missing} is not this worker's.")
    return [
        (r["execution_id"] in moved, moved.get(r["execution_id"]) or current[r["execution_id"]])
        for r in reports
    ]


@transaction.atomic
def agent_go_offline(*, worker: Worker) -> None:
    """The agent stops. Whatever is still running under it will never be reported (a
    run whose report failed, or work an HTTP long-poll claimed as the agent stopped):
    it is lost now, and retried, rather than left running until a deadline."""
    now = clock.now()
    if worker.go_offline(now=now):
        outbox.worker_event(worker, "offline")
    services.executions_lose(
        worker=worker, now=now, reason=f"Worker {worker.name} went offline while running it."
    )
