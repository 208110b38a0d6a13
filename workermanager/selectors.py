"""Reads of executions and workers that several interfaces share (the API, the admin,
the CLI, the dashboard, /metrics): each rule written once."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Exists, Min, OuterRef, Q

from orchestrator.models import Job
from workermanager.choices import (
    LIVE_WORKER_STATUSES,
    TERMINAL,
    ExecutionStatus,
    Isolation,
    ManagedWorkerStatus,
    WorkerStatus,
)
from workermanager.models import Execution, ExecutionLog, Worker, WorkerCredential, WorkerPool

LOG_PAGE = 1000  # chunks per page of a log, for every reader
MAX_LOG_PAGE = 5000


@dataclass(frozen=True)
class LogPage:
    """Chunks of an execution's output from an offset, and whether that is all of it."""

    execution: Execution
    chunks: list[ExecutionLog]
    offset: int
    next_offset: int
    complete: bool

    @property
    def status(self) -> str:
        return self.execution.status

    @property
    def truncated(self) -> bool:
        return self.execution.log_truncated


def execution_log_page(execution: Execution, *, offset: int = 0, limit: int = LOG_PAGE) -> LogPage:
    """The chunks with ``seq >= offset`` in order, at most ``limit``. ``complete`` once
    the execution has ended and nothing is left to read: tail a running execution by
    asking again from ``next_offset`` until then."""
    # The status before the chunks: a worker stores its last chunk before it settles the
    # execution, so a terminal status read first means no chunk can be missing below.
    execution.refresh_from_db(
        fields=[
            "status",
            "exit_code",
            "error",
            "log_truncated",
            "worker",
            "started_at",
            "finished_at",
            "cancel_requested",
        ]
    )
    is_terminal = execution.status in TERMINAL
    chunks = list(execution.logs.filter(seq__gte=offset).order_by("seq")[:limit])
    return LogPage(
        execution=execution,
        chunks=chunks,
        offset=offset,
        next_offset=chunks[-1].seq + 1 if chunks else offset,
        complete=is_terminal and len(chunks) < limit,
    )


def execution_log_pages(execution: Execution):
    """Every chunk of a finished or running execution's log, page by page (for a whole
    download): reads what is stored now, without waiting for more."""
    offset = 0
    while True:
        page = execution_log_page(execution, offset=offset, limit=MAX_LOG_PAGE)
        yield from page.chunks
        if len(page.chunks) < MAX_LOG_PAGE:
            return
        offset = page.next_offset


@dataclass(frozen=True)
class QueueFigures:
    worker_type: str
    queued: int
    oldest_created_at: datetime | None


def queue_by_worker_type() -> list[QueueFigures]:
    """Queued executions and the oldest one's creation time, per worker type."""
    rows = (
        Execution.objects.filter(status=ExecutionStatus.QUEUED)
        .values_list("worker_type")
        .annotate(n=Count("id"), oldest=Min("created_at"))
        .order_by()
    )
    return [QueueFigures(t, n, oldest) for t, n, oldest in rows]


OTHER = "other"


def known_worker_types(*, limit: int) -> set[str]:
    """Worker types that mean something here: registered by a worker or set on a job
    (and "", any type), at most ``limit`` of them. /metrics labels only these: a
    thousand made-up types in requests must not make a thousand series."""
    types = {""}
    types |= set(Worker.objects.values_list("type", flat=True).distinct()[:limit])
    types |= set(
        Job.objects.exclude(worker_type="").values_list("worker_type", flat=True).distinct()[:limit]
    )
    return set(sorted(types)[:limit])


def bounded(rows: dict[str, float], known: set[str]) -> dict[str, float]:
    """``rows`` by worker type, with every unknown type summed under "other"."""
    out: dict[str, float] = {}
    for worker_type, value in rows.items():
        key = worker_type if worker_type in known else OTHER
        out[key] = out.get(key, 0) + value
    return out


def running_by_worker_type() -> dict[str, int]:
    rows = (
        Execution.objects.filter(status=ExecutionStatus.RUNNING)
        .values_list("worker_type")
        .annotate(n=Count("id"))
        .order_by()
    )
    return dict(rows)


def database_agents_online() -> list[tuple]:
    """(id, type) of the online workers that talk to the database (no valid credential:
    HTTP agents have one), in id order: who a database agent may ask first for work
    (notify.designated)."""
    http = WorkerCredential.objects.filter(worker=OuterRef("pk"), revoked_at__isnull=True)
    return list(
        Worker.objects.filter(status=WorkerStatus.ONLINE)
        .exclude(Exists(http))
        .order_by("id")
        .values_list("id", "type")
    )


def unsandboxed_workers() -> list[Worker]:
    """Live workers whose commands run without a sandbox (isolation none)."""
    return list(
        Worker.objects.filter(status__in=LIVE_WORKER_STATUSES, isolation=Isolation.NONE)
        .order_by("name")
        .only("id", "name", "hostname")
    )


def workers_by_liveness(*, now: datetime) -> dict[str, int]:
    """How many workers are online, draining, stale and offline (Worker.liveness)."""
    counts = dict.fromkeys(("online", "draining", "stale", "offline"), 0)
    for worker in Worker.objects.only("status", "last_heartbeat_at"):
        counts[worker.liveness(now=now)] += 1
    return counts


def pools_with_worker_counts():
    """Worker pools, each with how many of its agents serve (starting or running) and
    how many drain: what the API, the admin and /metrics show. One query for a list."""
    M = ManagedWorkerStatus
    return WorkerPool.objects.annotate(
        current_workers=Count("workers", filter=Q(workers__status__in=[M.STARTING, M.RUNNING])),
        draining_workers=Count("workers", filter=Q(workers__status=M.STOPPING)),
    )
