"""Why is it waiting? A queued or pending execution explains itself, from the live state:
what the operator would otherwise find out by reading several pages.

Each reason has a code (for programs and /metrics), a message (for people) and a time
it has held since (as near as the state tells)."""

from dataclasses import asdict, dataclass
from datetime import datetime

from django.db.models import Count, Q

from hodei.lib import clock
from orchestrator.choices import PipelineStatus
from workermanager import hooks
from workermanager.choices import ExecutionStatus, WorkerStatus
from workermanager.models import Execution, Worker

S = ExecutionStatus


class Reason:
    """The codes, in the order they are looked for."""

    PIPELINE_PAUSED = "pipeline_paused"
    DEPENDENCIES = "dependencies"
    RETRY_BACKOFF = "retry_backoff"
    CONCURRENCY_LIMIT = "concurrency_limit"
    NO_WORKER_REGISTERED = "no_worker_registered"
    NO_WORKER_ONLINE = "no_worker_online"
    ALL_DRAINING = "all_draining"
    ALL_BUSY = "all_busy"
    DISPATCHING = "dispatching"  # a worker with room should take it any moment

    ALL = (
        PIPELINE_PAUSED,
        DEPENDENCIES,
        RETRY_BACKOFF,
        CONCURRENCY_LIMIT,
        NO_WORKER_REGISTERED,
        NO_WORKER_ONLINE,
        ALL_DRAINING,
        ALL_BUSY,
        DISPATCHING,
    )


@dataclass(frozen=True)
class Waiting:
    code: str
    message: str
    since: datetime

    def as_dict(self) -> dict:
        return asdict(self)


def _type_words(worker_type: str) -> str:
    return f"of type {worker_type!r}" if worker_type else "of any type"


def _live_workers(worker_type: str, *, now: datetime):
    """Workers that could take an execution of ``worker_type`` and are alive now."""
    workers = Worker.objects.exclude(status=WorkerStatus.OFFLINE)
    if worker_type:
        workers = workers.filter(type=worker_type)
    return [w for w in workers if w.liveness(now=now) in ("online", "draining")]


def waiting_reason(
    execution: Execution, *, now: datetime | None = None, brief: bool = False, memo=None
) -> Waiting | None:
    """Why ``execution`` (queued or pending) has not started; None once it has.
    ``brief`` leaves out its position in the queue (a list of many asks with a ``memo``
    dict, so each worker type's workers are looked at once)."""
    now = now or clock.now()
    if execution.status not in (S.QUEUED, S.PENDING):
        return None
    since = execution.created_at
    job = execution.job
    if (
        job is not None
        and job.pipeline.status != PipelineStatus.ACTIVE
        and (execution.pipeline_run_id or execution.status == S.PENDING)
    ):
        return Waiting(
            Reason.PIPELINE_PAUSED,
            f"Its pipeline {job.pipeline} is {job.pipeline.status}: nothing of it is released "
            "until it is active again.",
            since,
        )
    if execution.status == S.PENDING:
        # (A list's column shows the code only: it does not ask which jobs.)
        answer = None if brief else hooks.explain_pending.first(execution)
        code, message = answer or (Reason.DEPENDENCIES, "It waits for the jobs it needs.")
        return Waiting(code, message, since)
    if execution.available_at > now:
        return Waiting(
            Reason.RETRY_BACKOFF,
            f"Retry back-off: it may start at {execution.available_at:%Y-%m-%d %H:%M:%S} UTC.",
            since,
        )
    if job is not None and job.concurrency_limit:
        running = _memo(
            memo,
            ("running", job.pk),
            lambda: Execution.objects.filter(job=job, status=S.RUNNING).count(),
        )
        if running >= job.concurrency_limit:
            return Waiting(
                Reason.CONCURRENCY_LIMIT,
                f"Job {job} has its concurrency limit of {job.concurrency_limit} running.",
                since,
            )
    side = _memo(memo, execution.worker_type, lambda: _worker_side(execution.worker_type, now=now))
    wanted = _type_words(execution.worker_type)
    if side.code == Reason.NO_WORKER_REGISTERED:
        message = (
            f"No worker {wanted} has ever registered: start one (hodei runworker --type "
            f"{execution.worker_type or 'default'}), or a managed worker or pool of that type."
        )
    elif side.code == Reason.NO_WORKER_ONLINE:
        message = (
            f"No worker {wanted} is online ({side.registered} registered, all offline or silent)."
        )
    elif side.code == Reason.ALL_DRAINING:
        message = f"Every live worker {wanted} is draining ({side.live}): they take no new work."
    elif brief:
        message = (
            f"All {side.online} online worker(s) {wanted} are busy ({side.in_use} of "
            f"{side.capacity} slots in use)."
            if side.code == Reason.ALL_BUSY
            else f"A worker {wanted} has room; it should start within a poll."
        )
    else:
        ahead = (
            Execution.objects.filter(status=S.QUEUED, available_at__lte=now)
            .filter(Q(worker_type="") | Q(worker_type=execution.worker_type))
            .filter(
                Q(priority__gt=execution.priority)
                | Q(priority=execution.priority, id__lt=execution.id)
            )
            .count()
        )
        if side.code == Reason.ALL_BUSY:
            message = (
                f"All {side.online} online worker(s) {wanted} are busy ({side.in_use} of "
                f"{side.capacity} slots in use); {ahead} execution(s) ahead of it in the "
                f"queue (position {ahead + 1})."
            )
        else:
            message = (
                f"A worker {wanted} has room ({side.capacity - side.in_use} free slot(s)); "
                f"it should start within a poll. Position {ahead + 1} in the queue."
            )
    return Waiting(side.code, message, since)


@dataclass(frozen=True)
class WorkerSide:
    """Whether the workers that could run an execution of a worker type can take it."""

    code: str
    registered: int = 0
    live: int = 0
    online: int = 0
    capacity: int = 0
    in_use: int = 0


def _memo(memo: dict | None, key, compute):
    """``compute()``, once per ``key`` while a list shares ``memo``."""
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def _worker_side(worker_type: str, *, now: datetime) -> WorkerSide:
    registered = Worker.objects.all()
    if worker_type:
        registered = registered.filter(type=worker_type)
    count = registered.count()
    if not count:
        return WorkerSide(Reason.NO_WORKER_REGISTERED)
    live = _live_workers(worker_type, now=now)
    if not live:
        return WorkerSide(Reason.NO_WORKER_ONLINE, registered=count)
    online = [w for w in live if w.status == WorkerStatus.ONLINE]
    if not online:
        return WorkerSide(Reason.ALL_DRAINING, registered=count, live=len(live))
    capacity = sum(w.capacity for w in online)
    in_use = Execution.objects.filter(status=S.RUNNING, worker__in=online).count()
    code = Reason.ALL_BUSY if in_use >= capacity else Reason.DISPATCHING
    return WorkerSide(code, count, len(live), len(online), capacity, in_use)


def blocked_counts(*, now: datetime | None = None) -> dict[str, int]:
    """How many queued and pending executions wait for each reason (/metrics, scrape
    time): grouped queries, not one explanation per execution."""
    now = now or clock.now()
    counts = dict.fromkeys(Reason.ALL, 0)
    waiting = Execution.objects.filter(status__in=(S.QUEUED, S.PENDING))
    paused = Q(job__pipeline__status__in=(PipelineStatus.PAUSED, PipelineStatus.ARCHIVED)) & (
        Q(pipeline_run__isnull=False) | Q(status=S.PENDING)
    )
    counts[Reason.PIPELINE_PAUSED] = waiting.filter(paused).count()
    waiting = waiting.exclude(paused)
    counts[Reason.DEPENDENCIES] = waiting.filter(status=S.PENDING).count()
    queued = waiting.filter(status=S.QUEUED)
    counts[Reason.RETRY_BACKOFF] = queued.filter(available_at__gt=now).count()
    queued = queued.filter(available_at__lte=now)
    limited = queued.filter(job__concurrency_limit__isnull=False)
    at_limit = set()
    if limited.exists():
        running = dict(
            Execution.objects.filter(status=S.RUNNING, job__concurrency_limit__isnull=False)
            .values_list("job_id")
            .annotate(n=Count("id"))
            .order_by()
        )
        for job_id, limit in limited.values_list("job_id", "job__concurrency_limit").distinct():
            if running.get(job_id, 0) >= limit:
                at_limit.add(job_id)
        counts[Reason.CONCURRENCY_LIMIT] = queued.filter(job_id__in=at_limit).count()
        queued = queued.exclude(job_id__in=at_limit)
    by_type = dict(queued.values_list("worker_type").annotate(n=Count("id")).order_by())
    # Types nobody registered (anyone may queue for any type) cost no query each.
    registered = set(Worker.objects.values_list("type", flat=True).distinct())
    for worker_type, n in by_type.items():
        if worker_type and worker_type not in registered:
            counts[Reason.NO_WORKER_REGISTERED] += n
        else:
            counts[_worker_side(worker_type, now=now).code] += n
    return counts
