"""What agents ask of the control plane, whatever the transport: the database agent
(``agent.transport_db``) calls these functions in its own process, the HTTP endpoints
under ``/api/v1/agent/`` call them for remote agents. One owner of claim, heartbeat,
control, log storage and settlement; two transports."""

from django.db import transaction

from hodei.lib import clock
from hodei.lib.secrets import decrypt_env
from orchestrator.choices import Network
from orchestrator.models import Job
from workermanager import services, workers
from workermanager.choices import ExecutionStatus, WorkerStatus
from workermanager.models import Execution, Worker


def assignments(executions: list[Execution]) -> list[dict]:
    """What an agent needs to run each claimed execution, as JSON-ready dicts (the
    agent's ``Assignment``). Secret values travel only here, to the worker that runs
    the execution."""
    jobs = {e.job_id for e in executions if e.job_id}
    secrets = {}
    if jobs:
        # Decrypted here, for the agent that runs them, and nowhere else.
        secrets = {
            pk: decrypt_env(stored)
            for pk, stored in Job.objects.filter(pk__in=jobs).values_list("pk", "secret_env")
        }
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


def agent_claim(*, worker: Worker, limit: int) -> list[dict]:
    """Claim up to ``limit`` queued executions for ``worker``. (A draining agent asks
    for none: its heartbeat told it to drain.)"""
    if limit <= 0:
        return []
    return assignments(services.executions_claim(worker=worker, limit=limit))


def agent_heartbeat(*, worker: Worker) -> dict:
    """Record that ``worker`` is alive; tell it whether it drains. Heartbeats also reap
    silent peers, so a crashed agent's work is retried within a few heartbeats even
    between the maintenance task's runs."""
    worker.heartbeat(now=clock.now())
    workers.workers_reap()
    worker.refresh_from_db(fields=["status"])
    return {"draining": worker.status == WorkerStatus.DRAINING}


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
    ran; chunks of other executions are refused (PermissionError)."""
    ids = {str(execution_id) for execution_id, _ in chunks}
    owned = {
        str(i)
        for i in Execution.objects.filter(id__in=ids, worker=worker).values_list("id", flat=True)
    }
    if ids - owned:
        raise PermissionError(f"Not this worker's executions: {sorted(ids - owned)}")
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
    execution = Execution.objects.select_related("job").filter(pk=execution_id).first()
    if execution is None or execution.worker_id != worker.pk:
        raise PermissionError("Not this worker's execution.")
    return services.execution_settle(
        execution=execution,
        worker=worker,
        status=status,
        exit_code=exit_code,
        error=error,
        log_bytes=log_bytes,
        log_truncated=log_truncated,
        outputs=outputs or {},
    )


@transaction.atomic
def agent_go_offline(*, worker: Worker) -> None:
    worker.go_offline(now=clock.now())
