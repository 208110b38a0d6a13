"""Pipeline runs: start, advance, cancel, retry.

A run's jobs are executions of the run: the ones that need nothing start queued, the rest
pending. Whenever one of them changes (the worker manager's ``execution_changed`` hook,
in the same transaction), the run advances: pending jobs whose needs all succeeded (or
failed but ``allow_failure``) are released with their needs' outputs, pending jobs with
a need that failed are skipped, and a run with nothing left to run finishes.

Exactly once: advancing locks the run's row, so two parents finishing at the same moment
on two agents advance one after the other, and releasing is a conditional UPDATE
(pending -> queued) that only one can win. Every path takes the locks in the same order
(an execution's row, then its run's): no deadlock between a settle and a cancel."""

import threading
import uuid
from collections import defaultdict
from contextlib import contextmanager
from datetime import datetime

from django.db import transaction

from hodei.exceptions import Conflict, InvalidInput, InvalidTransition
from hodei.lib import clock
from orchestrator.choices import PipelineStatus
from orchestrator.models import Job, Pipeline
from pipelines import outbox
from pipelines.choices import (
    ACTIVE_JOB,
    ACTIVE_RUN,
    FINISHED_RUN,
    JOB_STATE_OF,
    RETRIED_JOB,
    RETRYABLE_RUN,
    JobState,
    RunStatus,
    RunTrigger,
)
from pipelines.models import PipelineRun
from telemetry import metrics, tracing
from workermanager import services as executions
from workermanager.choices import ACTIVE, ExecutionStatus, Trigger
from workermanager.models import Execution

R, J, S = RunStatus, JobState, ExecutionStatus
# Runs being advanced by this thread: an advance releases executions, whose changes come
# back through the hook; the outer advance goes on until nothing changes.
_advancing = threading.local()


@transaction.atomic
def pipeline_run_start(
    *,
    pipeline: Pipeline,
    jobs: list[Job] | None = None,
    env: dict | None = None,
    trigger: str = RunTrigger.API,
    schedule=None,
    scheduled_for: datetime | None = None,
) -> PipelineRun:
    """Run the pipeline's jobs (or ``jobs`` and every job they need) in dependency order,
    in parallel where they can. An archived pipeline is refused (409); a paused one's run
    waits until the pipeline is active again."""
    if pipeline.status == PipelineStatus.ARCHIVED:
        raise Conflict(f"Pipeline {pipeline} is archived: it cannot run. Make it active first.")
    graph = _graph(pipeline)
    chosen = _with_needs(graph, {str(j.pk) for j in jobs}) if jobs else set(graph)
    if jobs and any(j.pipeline_id != pipeline.pk for j in jobs):
        raise InvalidInput(
            "Jobs of another pipeline.", fields={"jobs": ["Every job must be of this pipeline."]}
        )
    graph = {job: sorted(set(needs) & chosen) for job, needs in graph.items() if job in chosen}
    now = clock.now()
    with tracing.tracer.start_as_current_span("pipeline_run.start") as span:
        run = PipelineRun(
            pipeline=pipeline,
            trigger=trigger,
            env=env or {},
            graph=graph,
            allow_failure=[
                str(pk)
                for pk in pipeline.jobs.filter(allow_failure=True).values_list("pk", flat=True)
                if str(pk) in chosen
            ],
            schedule=schedule,
            scheduled_for=scheduled_for,
            created_at=now,
        )
        run.trace_id, run.trace_parent = tracing.current_ids()
        run.save(force_insert=True)
        span.set_attribute("hodei.pipeline_run_id", str(run.id))
        paused = pipeline.status == PipelineStatus.PAUSED
        with _advancing_run(run):
            # Each enqueue fires the hook; the run advances once, after them all.
            for job in Job.objects.filter(pk__in=chosen).order_by("pk"):
                waits = bool(graph[str(job.pk)]) or paused
                executions.execution_enqueue(
                    job=job,
                    env=run.env,
                    trigger=Trigger.PIPELINE,
                    pipeline_run=run,
                    pending=waits,
                )
        run.pipeline = pipeline
        _advance(run)
    return run


@contextmanager
def _advancing_run(run: PipelineRun):
    """While this thread changes the run's executions, their hook calls do not advance
    it: the caller advances once afterwards."""
    runs = _advancing.__dict__.setdefault("runs", set())
    runs.add(run.pk)
    try:
        yield
    finally:
        runs.discard(run.pk)


def _graph(pipeline: Pipeline) -> dict[str, list[str]]:
    """Every job of the pipeline -> the jobs it needs (depends_on)."""
    graph: dict[str, list[str]] = {str(pk): [] for pk in pipeline.jobs.values_list("pk", flat=True)}
    edges = Job.depends_on.through.objects.filter(from_job__pipeline=pipeline)
    for job_id, need_id in edges.values_list("from_job_id", "to_job_id"):
        graph[str(job_id)].append(str(need_id))
    return graph


def _with_needs(graph: dict[str, list[str]], chosen: set[str]) -> set[str]:
    todo, seen = list(chosen), set(chosen)
    while todo:
        for need in graph.get(todo.pop(), ()):
            if need not in seen:
                seen.add(need)
                todo.append(need)
    return seen


def on_execution_changed(execution: Execution) -> None:
    """The worker manager's hook: one of a run's executions changed; advance the run."""
    if execution.pipeline_run_id is None:
        return
    if execution.pipeline_run_id in getattr(_advancing, "runs", set()):
        return  # the outer advance of this run goes on until nothing changes
    # Locked: advances of one run are serialised (exactly-once release of a child).
    run = (
        PipelineRun.objects.select_for_update(of=("self",))
        .select_related("pipeline")
        .filter(pk=execution.pipeline_run_id)
        .first()
    )
    if run is not None:
        _advance(run, changed=execution)


def on_pipeline_changed(pipeline: Pipeline, *, changed: set) -> None:
    """The orchestrator's hook: a pipeline made active again lets its runs go on."""
    if "status" not in changed or pipeline.status != PipelineStatus.ACTIVE:
        return
    for run in PipelineRun.objects.select_for_update().filter(
        pipeline=pipeline, status__in=ACTIVE_RUN
    ):
        _advance(run)


def _advance(run: PipelineRun, *, changed: Execution | None = None) -> None:
    if run.status in FINISHED_RUN:
        return
    with _advancing_run(run):
        if changed is not None and changed.status == S.RUNNING:
            if run.start(now=changed.started_at or clock.now()):
                outbox.run_event(run, "started")
            return  # a start releases nothing and finishes nothing
        if changed is not None and changed.job_id is not None:
            # Only what needs the job that changed can move, and only their states and
            # their needs' are read: a run of a thousand jobs reads a handful of rows
            # per change, not all of them (which made a wide DAG quadratic).
            job_id = str(changed.job_id)
            candidates = _dependants(run).get(job_id, [])
            states = _states(run, [job_id])
            # A job that did not block its dependants before this change (else they were
            # skipped then) can only block them now through this one: unless this one
            # blocks, a dependant with a need still running waits, whatever its others.
            may_wait = not _blocks(run, job_id, states.get(job_id, (None, None))[1])
        else:
            candidates = list(run.graph)
            states = _states(run)
            may_wait = False
        if _release_or_skip(run, candidates, states, may_wait=may_wait):
            return  # something was released: the run goes on
        if changed is not None:
            if _any_active(run):
                return  # the usual case: the run goes on without this change's help
            states = _states(run)
        _finish_if_done(run, states)


def nodes(run: PipelineRun) -> dict[str, Execution]:
    """Each job of the run -> its latest attempt."""
    return _latest(run, list(run.graph))


def state_of(execution: Execution) -> str:
    return JOB_STATE_OF[execution.status]


_dependants_cache: dict = {}


def _dependants(run: PipelineRun) -> dict[str, list[str]]:
    """job -> the jobs of the run that need it (the graph never changes during a run)."""
    cached = _dependants_cache.get(run.pk)
    if cached is None:
        cached = defaultdict(list)
        for job, needs in run.graph.items():
            for need in needs:
                cached[need].append(job)
        if len(_dependants_cache) > 1000:
            _dependants_cache.clear()
        _dependants_cache[run.pk] = cached
    return cached


def _latest(run: PipelineRun, job_ids) -> dict[str, Execution]:
    """The latest attempt of each of ``job_ids`` in the run."""
    latest: dict[str, Execution] = {}
    rows = run.executions.filter(job_id__in=list(job_ids)).select_related("job").order_by("id")
    for execution in rows:
        latest[str(execution.job_id)] = execution
    return latest


def _states(run: PipelineRun, job_ids=None) -> dict[str, tuple]:
    """Each job of the run (or each of ``job_ids``) -> (latest attempt's id, its state):
    one query of tuples, no model instances."""
    latest: dict[str, tuple] = {}
    rows = run.executions.all()
    if job_ids is not None:
        rows = rows.filter(job_id__in=list(job_ids))
    for job_id, pk, status in rows.order_by("id").values_list("job_id", "id", "status"):
        latest[str(job_id)] = (pk, JOB_STATE_OF[status])
    return latest


def _load_states(run: PipelineRun, states: dict, job_ids) -> None:
    """Add to ``states`` those of ``job_ids`` it does not hold yet."""
    missing = [job_id for job_id in dict.fromkeys(job_ids) if job_id not in states]
    if missing:
        states.update(_states(run, missing))


def _any_active(run: PipelineRun) -> bool:
    """Whether any job of the run is still to run or running (an EXISTS)."""
    return run.executions.filter(status__in=ACTIVE).exists()


# A candidate needing more jobs than this is first asked whether any of them still runs
# (a fan-in of a thousand: 999 times yes) before their states are read.
FEW_NEEDS = 16
ACTIVE_PAGE = 64


def _any_need_active(run: PipelineRun, needs: list[str]) -> bool:
    """Whether any of ``needs`` is still to run or running. The run's active jobs are
    read a page at a time (a wide fan-in's are nearly all its needs: one short page
    answers), rather than sending a thousand ids to the database on every change."""
    wanted = set(needs)
    rows = run.executions.filter(status__in=ACTIVE).values_list("job_id", flat=True)
    page = [str(job_id) for job_id in rows[:ACTIVE_PAGE]]
    if not wanted.isdisjoint(page):
        return True
    if len(page) < ACTIVE_PAGE:
        return False
    return not wanted.isdisjoint(str(job_id) for job_id in rows[ACTIVE_PAGE:])


def _blocks(run: PipelineRun, job_id: str, state) -> bool:
    """Whether a job in ``state`` keeps the jobs that need it from running."""
    return state in (J.SKIPPED, J.CANCELLED) or (
        state == J.FAILED and job_id not in run.allow_failure
    )


def _release_or_skip(
    run: PipelineRun, candidates: list[str], states: dict, *, may_wait: bool
) -> bool:
    """Release each pending candidate whose needs all succeeded (or may fail), with their
    outputs; skip one with a need that did not succeed, and then what needs it. Whether
    anything was released. ``states`` is updated with what changed. With ``may_wait``
    (no candidate can be blocked yet), a candidate of many needs with one still running
    is left as it is without reading their states."""
    active = run.pipeline.status == PipelineStatus.ACTIVE and not run.cancel_requested
    todo = list(dict.fromkeys(candidates))
    released = False
    while todo:
        ready, blocked = [], {}
        _load_states(run, states, todo)
        todo = [job_id for job_id in todo if states.get(job_id, (None, None))[1] == J.PENDING]
        if may_wait:
            todo = [
                job_id
                for job_id in todo
                if len(run.graph.get(job_id, [])) <= FEW_NEEDS
                or not _any_need_active(run, run.graph[job_id])
            ]
            may_wait = False  # what follows are dependants of skipped jobs: blocked
        _load_states(run, states, [n for job_id in todo for n in run.graph.get(job_id, [])])
        for job_id in todo:
            needs = [(n, states[n]) for n in run.graph.get(job_id, []) if n in states]
            blocking = [n for n, (_, state) in needs if _blocks(run, n, state)]
            if blocking:
                blocked[job_id] = blocking
            elif active and all(state in (J.SUCCEEDED, J.FAILED) for _, (_, state) in needs):
                ready.append((job_id, [pk for _, (pk, _) in needs]))
        if ready:
            released |= _release(run, ready, states)
        skipped = _skip(run, blocked, states) if blocked else []
        todo = [child for job in skipped for child in _dependants(run).get(job, [])]
    return released


def _release(run: PipelineRun, ready: list[tuple[str, list]], states: dict) -> bool:
    """Queue the ready jobs, each with its needs' outputs (read for these only)."""
    need_ids = {pk for _, needs in ready for pk in needs}
    outputs = dict(
        Execution.objects.filter(pk__in=need_ids).exclude(outputs={}).values_list("pk", "outputs")
    )
    pending = {
        str(e.job_id): e
        for e in run.executions.filter(
            pk__in=[states[job_id][0] for job_id, _ in ready], status=S.PENDING
        )
    }
    releases = []
    for job_id, needs in ready:
        if job_id in pending:
            env: dict[str, str] = {}
            for pk in needs:
                env.update(outputs.get(pk, {}))
            releases.append((pending[job_id], env))
    done = executions.executions_release(releases=releases)
    for execution in done:
        states[str(execution.job_id)] = (execution.pk, state_of(execution))
    return bool(done)


def _skip(run: PipelineRun, blocked: dict[str, list[str]], states: dict) -> list[str]:
    names = dict(
        Job.objects.filter(pk__in={n for ns in blocked.values() for n in ns}).values_list(
            "pk", "name"
        )
    )
    skipped = []
    for execution in run.executions.filter(
        pk__in=[states[job_id][0] for job_id in blocked], status=S.PENDING
    ):
        job_id = str(execution.job_id)
        listed = ", ".join(names.get(uuid.UUID(n), n) for n in blocked[job_id])
        reason = f"Skipped: a job it needs did not succeed ({listed})."
        if executions.execution_skip(execution=execution, reason=reason):
            states[job_id] = (execution.pk, J.SKIPPED)
            skipped.append(job_id)
    return skipped


def _finish_if_done(run: PipelineRun, states: dict) -> None:
    if any(state in ACTIVE_JOB for _, state in states.values()):
        return
    failed = any(_blocks(run, job_id, state) for job_id, (_, state) in states.items())
    status = R.CANCELLED if run.cancel_requested else (R.FAILED if failed else R.SUCCEEDED)
    run.finish(status=status, now=clock.now())
    _finished(run)


def _finished(run: PipelineRun) -> None:
    outbox.run_event(run, "finished")
    metrics.inc("hodei_pipeline_runs_finished_total", status=run.status)
    if run.duration_ms is not None:
        seconds = run.duration_ms / 1000
        metrics.observe("hodei_pipeline_run_duration_seconds", seconds, status=run.status)
    tracing.record_span(
        run.trace_parent,
        "pipeline_run",
        start=run.started_at or run.created_at,
        end=run.finished_at,
        **{"hodei.status": run.status, "hodei.pipeline_run_id": str(run.id)},
    )


def pipeline_run_cancel(*, run: PipelineRun) -> PipelineRun:
    """Cancel: pending and queued jobs end cancelled, running ones are killed as an
    execution cancel does; the run is cancelled. 409 once it has finished.

    In three steps, each its own transaction when the caller has none: mark the run (no
    advance releases anything of it from then on), cancel its executions one by one
    (each locks only its own row, as a settle does first), then end the run. No lock is
    held while taking another in the opposite order, so a settle never deadlocks with it."""
    with transaction.atomic():
        locked = PipelineRun.objects.select_for_update().get(pk=run.pk)
        try:
            locked.request_cancel()
        except InvalidTransition as exc:
            raise Conflict(str(exc)) from None
    with _advancing_run(run):
        for execution in run.executions.filter(status__in=ACTIVE):
            try:
                executions.execution_cancel(execution=execution)
            except Conflict:
                pass  # finished meanwhile
    with transaction.atomic():
        run = PipelineRun.objects.select_for_update().get(pk=run.pk)
        if run.status in ACTIVE_RUN:
            run.cancel(now=clock.now())
            _finished(run)
    return run


@transaction.atomic
def pipeline_run_retry(*, run: PipelineRun) -> PipelineRun:
    """Run a finished run's failed, cancelled and skipped jobs again, in the same run,
    keeping what succeeded ("retry failed jobs", as in GitLab). 409 otherwise."""
    run = PipelineRun.objects.select_for_update().get(pk=run.pk)
    latest = nodes(run)
    again = [e for e in latest.values() if state_of(e) in RETRIED_JOB]
    if not again or run.status not in RETRYABLE_RUN:
        raise Conflict(
            f"The run is {run.status}: only a failed or cancelled run, with jobs to run again, "
            "can be retried."
        )
    run.reopen()
    with _advancing_run(run):
        for execution in again:
            executions.execution_enqueue(
                job=execution.job,
                env=run.env,
                trigger=Trigger.RETRY,
                pipeline_run=run,
                pending=True,
                retry_of=execution if execution.status != S.SKIPPED else None,
            )
    _advance(run)
    return run


def run_jobs(run: PipelineRun) -> list[dict]:
    """Every job of the run with its state, latest attempt and times (the API's and the
    admin's view of a run)."""
    latest = nodes(run)
    jobs = {str(j.pk): j for j in Job.objects.filter(pk__in=list(run.graph))}
    out = []
    for job_id in _topological(run.graph):
        execution = latest.get(job_id)
        job = jobs.get(job_id)
        out.append(
            {
                "job_id": job_id,
                "name": job.name if job else "(deleted)",
                "needs": run.graph[job_id],
                "allow_failure": job_id in run.allow_failure,
                "state": state_of(execution) if execution else J.PENDING,
                "execution": execution,
            }
        )
    return out


def _topological(graph: dict[str, list[str]]) -> list[str]:
    """Jobs in an order where each comes after what it needs (ties: by id)."""
    dependants = defaultdict(list)
    remaining = {job: len(needs) for job, needs in graph.items()}
    for job, needs in graph.items():
        for need in needs:
            dependants[need].append(job)
    ready = sorted(job for job, count in remaining.items() if count == 0)
    order = []
    while ready:
        job = ready.pop(0)
        order.append(job)
        for child in sorted(dependants[job]):
            remaining[child] -= 1
            if remaining[child] == 0:
                ready.append(child)
        ready.sort()
    return order + sorted(set(graph) - set(order))


def explain_pending(execution: Execution):
    """The worker manager's question: why does this pending job of a run wait? It names
    the jobs it needs that have not succeeded yet."""
    if execution.pipeline_run_id is None or execution.job_id is None:
        return None
    run = execution.pipeline_run
    needs = run.graph.get(str(execution.job_id), [])
    latest = _latest(run, needs)
    open_needs = [f"{e.job} ({state_of(e)})" for e in latest.values() if state_of(e) != J.SUCCEEDED]
    if not open_needs:
        return ("dependencies", "Its needs are done: it is about to be released.")
    return ("dependencies", f"It waits for the jobs it needs: {', '.join(open_needs)}.")
