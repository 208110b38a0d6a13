#!/usr/bin/env python3
"""Pipeline-run benchmark (issue 13): the latency of a dependency edge, the overhead of a
wide fan-out/fan-in DAG against the same executions submitted flat, and many runs at
once, on this machine against local PostgreSQL with two real agents.

    python3 bench/bench_pipelines.py              # 3 rounds: 10-15 min on 2 cores today
    python3 bench/bench_pipelines.py --quick      # small sizes, 1 round: under a minute
    python3 bench/bench_pipelines.py --diagnose   # then the settles in-process, profiled
    python3 bench/bench_pipelines.py --rounds 0 --diagnose   # the diagnosis alone (~4 min)

(Most of a full run is the 1 -> 1000 -> 1 DAG: 2.5-3.5 min per round with the code as
measured in docs/benchmarks.md.)

It re-executes itself under the project's .venv, drops and recreates the database
`hodei_bench_pipelines`, migrates, seeds the pipelines (jobs and their `depends_on` rows
with bulk_create), starts 2 agents (`manage.py runworker --concurrency 8 --isolation
none`: plain processes, so the sandbox's start-up cost does not hide the control plane's)
and keeps them for the whole run. Each round measures, in this order:

1. plain dispatch: single executions of a job with command `true`, enqueued one at a
   time (execution_enqueue, here) while the agents are idle; created_at -> started_at.
2. edge latency: one run of a chain of jobs (job i needs job i-1, commands `true`);
   parent finished_at -> child started_at for each edge.
3. fan-out/fan-in: one run of a 1 -> W -> 1 DAG, and the same W + 2 jobs enqueued flat
   (execution_enqueue for each, in one transaction as pipeline_run_start does); wall
   time from the call to the last finished_at. The two alternate in order per round.
4. concurrent runs: R runs of a 5-job chain, started in one transaction (so they all
   become visible at once); all must finish; runs/s and jobs/s from the commit.

Timestamps come from the rows: started_at is the agent's clock.now() when its claim
transaction begins (before the claiming UPDATE), finished_at its clock.now() when the
settle transaction begins (after the command exited and its output was stored; the
run's advance, which releases the children, happens later in that same transaction).
All processes read the same system clock (CLOCK_REALTIME). The agents' log lines
("execution started" once the command was spawned, "execution succeeded" just before the
end is reported) add the hop as an operator sees it, to the millisecond.

It prints a table (medians over rounds) and writes the raw figures to
var/bench-results/pipelines-<time>.json; agent output goes to var/bench-logs/. Every
process it starts is stopped in a finally block (SIGTERM, then SIGKILL). Exit status 1
when a run did not finish in time or did not succeed.
"""

import argparse
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from functools import partial

import benchlib
from benchlib import ROOT, VENV_PY, Proc, backend_cpus, connect, median, pct, say, stop_all

DB = "hodei_bench_pipelines"
DATABASE_URL = benchlib.db_url(DB)
AGENTS, CONCURRENCY = 2, 8
CHAIN_RUN_JOBS = 5  # jobs per run in the concurrent-runs part
IDLE_GAP_S = 0.05  # plain dispatch: pause after each execution, so the agents are idle
FINISHED_RUN = ("succeeded", "failed", "cancelled")
ACTIVE_EXECUTION = ("pending", "queued", "running")

hodei_env = partial(benchlib.hodei_env, DATABASE_URL)


def start_agent(name: str) -> Proc:
    return Proc(
        f"pipelines-{name}",
        [
            VENV_PY,
            "manage.py",
            "runworker",
            "--type",
            "default",
            "--name",
            name,
            "--concurrency",
            CONCURRENCY,
            "--isolation",
            "none",
        ],
        hodei_env(),
        marker="registered as worker",
    )


# -- seeding ---------------------------------------------------------------------------------


def make_pipeline(name: str, n_jobs: int, edges: list[tuple[int, int]]):
    """A pipeline of ``n_jobs`` jobs running `true`, with ``edges`` (job, job it needs)
    as indexes into the jobs. bulk_create: the services validate one job at a time."""
    from hodei.lib import clock
    from orchestrator import services as orchestrator
    from orchestrator.models import Job

    pipeline = orchestrator.pipeline_create(name=name)
    now = clock.now()
    jobs = Job.objects.bulk_create(
        [
            Job(pipeline=pipeline, name=f"{name}-{i:04d}", command="true", created_at=now)
            for i in range(n_jobs)
        ]
    )
    through = Job.depends_on.through
    through.objects.bulk_create(
        [through(from_job_id=jobs[a].pk, to_job_id=jobs[b].pk) for a, b in edges]
    )
    return pipeline, jobs


def seed(sizes: dict) -> dict:
    chain_n, fan_w = sizes["chain"], sizes["fan"]
    plain, plain_jobs = make_pipeline("plain", 1, [])
    chain, _ = make_pipeline("chain", chain_n, [(i, i - 1) for i in range(1, chain_n)])
    fan_edges = [(1 + i, 0) for i in range(fan_w)] + [(fan_w + 1, 1 + i) for i in range(fan_w)]
    fan, fan_jobs = make_pipeline("fan", fan_w + 2, fan_edges)
    short, _ = make_pipeline(
        "chain5", CHAIN_RUN_JOBS, [(i, i - 1) for i in range(1, CHAIN_RUN_JOBS)]
    )
    warm, _ = make_pipeline("warmup", 3, [(1, 0), (2, 1)])
    with connect(DB) as conn:
        conn.execute("ANALYZE")
    return {
        "plain_job": plain_jobs[0],
        "chain": chain,
        "fan": fan,
        "fan_jobs": sorted(fan_jobs, key=lambda j: j.pk),  # the order the run creates them
        "chain5": short,
        "warmup": warm,
    }


# -- helpers ---------------------------------------------------------------------------------


def wait_for(check, timeout: float, interval: float):
    """check()'s first value that is not None, or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "p99": pct(values, 99),
        "max": max(values) if values else float("nan"),
    }


class Sampler:
    """What the agents' PostgreSQL sessions are doing, every 20 ms: for each active one,
    its wait event and the start of its query. Evidence of where a phase waits."""

    def __init__(self, exclude: set[int]):
        self.exclude = exclude
        self.samples: Counter = Counter()
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with connect(DB) as conn:
            own = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            while not self._stop.wait(0.02):
                rows = conn.execute(
                    "SELECT pid, coalesce(wait_event_type || ':' || wait_event, 'CPU'), "
                    "regexp_replace(left(query, 48), '\\s+', ' ', 'g') FROM pg_stat_activity "
                    "WHERE datname = %s AND state = 'active' AND backend_type = 'client backend'",
                    [DB],
                ).fetchall()
                self.ticks += 1
                for pid, wait, query in rows:
                    if pid != own and pid not in self.exclude:
                        self.samples[(wait, query)] += 1

    def top(self, n: int = 5) -> list[dict]:
        return [
            {"wait": wait, "query": query, "active_share": count / max(1, self.ticks)}
            for (wait, query), count in self.samples.most_common(n)
        ]


class Cpu:
    """CPU seconds used by the agents (own; their commands) and the database's server
    processes over a phase."""

    def __init__(self, agents: list[Proc], conn):
        self.agents, self.conn = agents, conn

    def snapshot(self) -> dict:
        cpus = [a.cpu() or (0.0, 0.0) for a in self.agents]
        return {
            "agents": sum(c[0] for c in cpus),
            "commands": sum(c[1] for c in cpus),
            "db": backend_cpus(self.conn, DB),
            "machine": benchlib.machine_cpu(),
        }

    @staticmethod
    def delta(a: dict, b: dict, per: int) -> dict:
        db = sum(v - a["db"].get(pid, 0.0) for pid, v in b["db"].items())
        m0, m1 = a["machine"], b["machine"]
        return {
            "agents_ms_per_job": 1000 * (b["agents"] - a["agents"]) / per,
            "commands_ms_per_job": 1000 * (b["commands"] - a["commands"]) / per,
            "db_ms_per_job": 1000 * db / per,
            "machine_busy": (m1.busy - m0.busy) / max(1, m1.total - m0.total),
        }


# The agent's log lines "execution started (pid N)" (written once Popen returned: the
# command is running) and "execution succeeded" (written just before it reports the end:
# the exit was noticed and the output stored), with their millisecond timestamps.
AGENT_LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) INFO hodei\.agent execution "
    r"(started|succeeded|failed)\b.* execution_id=([0-9a-f-]{36})"
)


def agent_log_times(agents: list[Proc]) -> dict[str, dict[str, float]]:
    """execution id -> {"spawned": epoch s, "reported": epoch s}, from the agents' logs
    (local time, as logging writes it; millisecond resolution)."""
    time.sleep(0.2)  # the last lines have gone through the agents' pipes
    out: dict[str, dict[str, float]] = {}
    for agent in agents:
        for line in agent.output().splitlines():
            m = AGENT_LOG_LINE.match(line)
            if m:
                t = time.mktime(time.strptime(m[1], "%Y-%m-%d %H:%M:%S")) + int(m[2]) / 1000
                out.setdefault(m[4], {})["spawned" if m[3] == "started" else "reported"] = t
    return out


def execution_rows(conn, *, run_id=None, ids=None) -> list[tuple]:
    """(id, job id, status, worker id, created, available, started, finished) as epoch
    seconds, oldest first."""
    where, param = ("pipeline_run_id = %s", run_id) if run_id else ("id = ANY(%s)", ids)
    return conn.execute(
        "SELECT id::text, job_id::text, status, worker_id::text, extract(epoch FROM created_at), "
        "extract(epoch FROM available_at), extract(epoch FROM started_at), "
        f"extract(epoch FROM finished_at) FROM workermanager_execution WHERE {where} ORDER BY id",
        [param],
    ).fetchall()


def wait_run(conn, run_id, timeout: float, interval: float = 0.05) -> str | None:
    def check():
        row = conn.execute("SELECT status FROM pipelines_pipelinerun WHERE id = %s", [run_id])
        status = row.fetchone()[0]
        return status if status in FINISHED_RUN else None

    return wait_for(check, timeout, interval)


def run_state(conn, run_ids: list) -> dict:
    """Runs by status, and their executions by status: what a stuck run looks like."""
    runs = conn.execute(
        "SELECT status, count(*) FROM pipelines_pipelinerun WHERE id = ANY(%s) GROUP BY 1",
        [run_ids],
    ).fetchall()
    executions = conn.execute(
        "SELECT status, count(*) FROM workermanager_execution WHERE pipeline_run_id = ANY(%s) "
        "GROUP BY 1",
        [run_ids],
    ).fetchall()
    return {"runs": dict(runs), "executions": dict(executions)}


# -- 1. plain dispatch -----------------------------------------------------------------------


def plain_dispatch(conn, job, n: int, agents: list[Proc]) -> dict:
    from workermanager import services

    ids, stuck = [], 0
    for _ in range(n):
        execution = services.execution_enqueue(job=job)
        ids.append(execution.id)

        def done(eid=execution.id):
            status = conn.execute(
                "SELECT status FROM workermanager_execution WHERE id = %s", [eid]
            ).fetchone()[0]
            return status if status not in ACTIVE_EXECUTION else None

        if wait_for(done, timeout=30, interval=0.01) is None:
            stuck += 1
        time.sleep(IDLE_GAP_S)
    rows = execution_rows(conn, ids=ids)
    lat = [1000 * (float(r[6]) - float(r[4])) for r in rows if r[6] is not None]
    logs = agent_log_times(agents)
    spawn = [
        1000 * (logs[r[0]]["spawned"] - float(r[4]))
        for r in rows
        if "spawned" in logs.get(r[0], {})
    ]
    return {
        "n": n,
        "stuck": stuck,
        "failed": sum(r[2] != "succeeded" for r in rows),
        "dispatch_ms": summary(lat),
        "to_spawn_ms": summary(spawn),  # created_at -> "execution started" logged
    }


# -- 2. edge latency -------------------------------------------------------------------------


def edges_of(rows: list[tuple], graph: dict, logs: dict | None = None) -> list[dict]:
    """Each dependency edge of a run: parent finished -> child released (available_at)
    -> child claimed (started_at), whether the same agent ran both, and from the agents'
    logs the parent's end reported -> the child's command running."""
    logs = logs or {}
    latest = {r[1]: r for r in rows}  # the latest attempt of each job (rows oldest first)
    out = []
    for job, needs in graph.items():
        child = latest.get(job)
        for need in needs:
            parent = latest.get(need)
            if not child or not parent or child[6] is None or parent[7] is None:
                continue
            finished, available, started = float(parent[7]), float(child[5]), float(child[6])
            reported = logs.get(parent[0], {}).get("reported")
            spawned = logs.get(child[0], {}).get("spawned")
            out.append(
                {
                    "edge_ms": 1000 * (started - finished),
                    "release_ms": 1000 * (available - finished),
                    "claim_ms": 1000 * (started - available),
                    "same_agent": child[3] == parent[3],
                    "to_spawn_ms": 1000 * (spawned - reported) if reported and spawned else None,
                }
            )
    return out


def chain_edges(conn, pipeline, n: int, agents: list[Proc]) -> dict:
    from pipelines import services
    from pipelines.models import PipelineRun

    t0 = time.time()
    run = services.pipeline_run_start(pipeline=pipeline)
    status = wait_run(conn, run.pk, timeout=max(60.0, n * 1.0))
    rows = execution_rows(conn, run_id=run.pk)
    run = PipelineRun.objects.get(pk=run.pk)
    edges = edges_of(rows, run.graph, agent_log_times(agents))
    last = max((float(r[7]) for r in rows if r[7] is not None), default=float("nan"))
    return {
        "n_jobs": n,
        "status": status or "STUCK",
        "state": run_state(conn, [run.pk]) if status != "succeeded" else None,
        "edges": len(edges),
        "edge_ms": summary([e["edge_ms"] for e in edges]),
        "release_ms": summary([e["release_ms"] for e in edges]),
        "claim_ms": summary([e["claim_ms"] for e in edges]),
        "to_spawn_ms": summary([e["to_spawn_ms"] for e in edges if e["to_spawn_ms"] is not None]),
        "same_agent_share": sum(e["same_agent"] for e in edges) / max(1, len(edges)),
        "wall_s": last - t0,
    }


# -- 3. fan-out / fan-in ---------------------------------------------------------------------


def fan_dag(conn, pipeline, width: int, cpu: Cpu, exclude: set[int]) -> dict:
    from pipelines import services
    from pipelines.models import PipelineRun

    c0 = cpu.snapshot()
    with Sampler(exclude) as sampler:
        t0 = time.time()
        run = services.pipeline_run_start(pipeline=pipeline)
        submit = time.time() - t0
        status = wait_run(conn, run.pk, timeout=max(300.0, width * 0.5), interval=0.1)
    c1 = cpu.snapshot()
    rows = execution_rows(conn, run_id=run.pk)
    run = PipelineRun.objects.get(pk=run.pk)
    graph = run.graph
    root = next(j for j, needs in graph.items() if not needs)
    sink = next(j for j, needs in graph.items() if len(needs) == width)
    by_job = {r[1]: r for r in rows}
    middle = [r for r in rows if r[1] not in (root, sink)]
    f = [float(r[7]) for r in rows if r[7] is not None]
    out = {
        "width": width,
        "status": status or "STUCK",
        "state": run_state(conn, [run.pk]) if status != "succeeded" else None,
        "submit_s": submit,
        "wall_s": (max(f) - t0) if f else float("nan"),
        "cpu": Cpu.delta(c0, c1, len(rows)),
        "waits": sampler.top(),
    }
    if status == "succeeded":
        root_r, sink_r = by_job[root], by_job[sink]
        m_start = [float(r[6]) for r in middle]
        m_end = [float(r[7]) for r in middle]
        out |= {
            # the root's settle releases every middle job in its own transaction
            "fan_out_first_ms": 1000 * (min(m_start) - float(root_r[7])),
            "fan_out_release_ms": 1000 * (max(float(r[5]) for r in middle) - float(root_r[7])),
            "middle_rate": width / (max(m_end) - min(m_start)),
            "fan_in_edge_ms": 1000 * (float(sink_r[6]) - max(m_end)),
            # how long the middle phase took beyond its first start: the drain, as flat
            "middle_s": max(m_end) - min(m_start),
        }
    return out


def fan_flat(conn, jobs: list, cpu: Cpu, exclude: set[int]) -> dict:
    from django.db import transaction

    from workermanager import services

    c0 = cpu.snapshot()
    with Sampler(exclude) as sampler:
        t0 = time.time()
        with transaction.atomic():  # as pipeline_run_start: visible at once, on commit
            ids = [services.execution_enqueue(job=job).id for job in jobs]
        submit = time.time() - t0

        def done():
            left = conn.execute(
                "SELECT count(*) FROM workermanager_execution WHERE id = ANY(%s) "
                "AND status = ANY(%s)",
                [ids, list(ACTIVE_EXECUTION)],
            ).fetchone()[0]
            return True if left == 0 else None

        finished = wait_for(done, timeout=max(300.0, len(jobs) * 0.5), interval=0.1)
    c1 = cpu.snapshot()
    rows = execution_rows(conn, ids=ids)
    starts = [float(r[6]) for r in rows if r[6] is not None]
    ends = [float(r[7]) for r in rows if r[7] is not None]
    return {
        "n": len(jobs),
        "status": "succeeded"
        if finished and all(r[2] == "succeeded" for r in rows)
        else ("STUCK" if not finished else "failed"),
        "submit_s": submit,
        "wall_s": (max(ends) - t0) if ends else float("nan"),
        "rate": len(jobs) / (max(ends) - min(starts)) if ends else float("nan"),
        "cpu": Cpu.delta(c0, c1, len(rows)),
        "waits": sampler.top(),
    }


# -- 4. concurrent runs ----------------------------------------------------------------------


def concurrent_runs(conn, pipeline, n_runs: int, cpu: Cpu, exclude: set[int]) -> dict:
    from django.db import transaction

    from pipelines import services

    c0 = cpu.snapshot()
    with Sampler(exclude) as sampler:
        t0 = time.time()
        with transaction.atomic():  # all visible at the same moment
            run_ids = [services.pipeline_run_start(pipeline=pipeline).pk for _ in range(n_runs)]
        t_commit = time.time()

        def done():
            left = conn.execute(
                "SELECT count(*) FROM pipelines_pipelinerun WHERE id = ANY(%s) "
                "AND status <> ALL(%s)",
                [run_ids, list(FINISHED_RUN)],
            ).fetchone()[0]
            return True if left == 0 else None

        timeout = max(300.0, n_runs * CHAIN_RUN_JOBS * 0.2)
        finished = wait_for(done, timeout=timeout, interval=0.1)
    c1 = cpu.snapshot()
    runs = conn.execute(
        "SELECT status, extract(epoch FROM finished_at) FROM pipelines_pipelinerun "
        "WHERE id = ANY(%s)",
        [run_ids],
    ).fetchall()
    ends = [float(r[1]) for r in runs if r[1] is not None]
    jobs = n_runs * CHAIN_RUN_JOBS
    wall = (max(ends) - t_commit) if ends else float("nan")
    return {
        "runs": n_runs,
        "jobs": jobs,
        "status": "succeeded"
        if finished and all(r[0] == "succeeded" for r in runs)
        else ("STUCK" if not finished else "failed"),
        "timeout_s": timeout,
        "state": run_state(conn, run_ids),
        "start_s": t_commit - t0,  # 200 pipeline_run_start calls in one transaction
        "wall_s": wall,
        "runs_per_s": len(ends) / wall if ends else 0.0,
        "jobs_per_s": len(ends) * CHAIN_RUN_JOBS / wall if ends else 0.0,
        "run_done_s": summary([e - t_commit for e in ends]),
        "cpu": Cpu.delta(c0, c1, jobs),
        "waits": sampler.top(),
    }


# -- diagnosis: the settles in-process, timed and counted ------------------------------------


def statement_kind(sql: str) -> str:
    """'UPDATE orchestrator_job', 'SELECT workermanager_execution JOIN orchestrator_job'..."""
    if "pg_notify" in sql:
        return "SELECT pg_notify"
    verb = sql.split(None, 1)[0].upper()
    table = re.search(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)', sql)
    join = re.search(r'JOIN\s+"?(\w+)', sql)
    exists = " (EXISTS)" if sql.startswith("SELECT 1 AS") else ""
    lock = " FOR UPDATE" if "FOR UPDATE" in sql else ""
    return f"{verb} {table[1] if table else ''}{' JOIN ' + join[1] if join else ''}{exists}{lock}"


def diagnose(objs: dict) -> dict:
    """With no agent running: a worker registered here claims and settles executions as an
    agent's database transport does (agent_claim, agent_settle), timed, with their queries
    listed; the start of the fan run against the same jobs enqueued flat; cProfile of one
    fan-in settle."""
    import cProfile
    import io
    import pstats

    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from pipelines import services as pipelines
    from telemetry import metrics
    from workermanager import agent_protocol, services, workers

    metrics.buffer.batched = True  # as in an agent: metrics go with the heartbeat
    worker, _ = workers.worker_register(type="default", name="bench-diagnose", capacity=1000)

    def timed(call) -> dict:
        """call()'s wall time and its statements, each timed around the driver call and
        grouped by kind with the rows they returned; for a short call, the statements in
        order (BEGIN, SAVEPOINT and COMMIT too, from Django's query log: ms resolution)."""
        statements: list[tuple[str, float, int]] = []

        def wrapper(execute, sql, params, many, context):
            t0 = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                took = 1000 * (time.perf_counter() - t0)
                statements.append((sql, took, max(0, context["cursor"].rowcount or 0)))

        connection.queries_log.clear()  # it keeps 9,000: CaptureQueries would miss some
        with CaptureQueriesContext(connection) as queries, connection.execute_wrapper(wrapper):
            t0 = time.perf_counter()
            call()
            ms = 1000 * (time.perf_counter() - t0)
        groups: dict[str, list] = {}
        for sql, took, rows in statements:
            group = groups.setdefault(statement_kind(sql), [0, 0.0, 0])
            group[0] += 1
            group[1] += took
            group[2] += rows
        listing = []
        if len(statements) <= 40:
            timed_sql = iter(statements)
            for q in queries.captured_queries:
                sql = q["sql"]
                if sql in ("BEGIN", "COMMIT"):  # not through the wrapper
                    listing.append(f"{1000 * float(q['time']):6.2f} ms              {sql}")
                    continue
                _, took, rows = next(timed_sql, ("", float("nan"), 0))
                listing.append(f"{took:6.2f} ms  {rows:5d} rows  {' '.join(sql.split())[:80]}")
        return {
            "ms": ms,
            "queries": len(statements),
            "sql_ms": sum(t for _, t, _ in statements),
            "by_kind": {
                k: {"count": c, "ms": t, "rows": r}
                for k, (c, t, r) in sorted(groups.items(), key=lambda g: -g[1][1])
            },
            "listing": listing,
        }

    def settle(eid) -> dict:
        return timed(
            lambda: agent_protocol.agent_settle(
                worker=worker,
                execution_id=str(eid),
                status="succeeded",
                exit_code=0,
                error="",
                log_bytes=0,
                log_truncated=False,
            )
        )

    def claim_all(limit=5000) -> list[str]:
        return [a["id"] for a in agent_protocol.agent_claim(worker=worker, limit=limit)]

    def short(t: dict) -> dict:
        return {k: v for k, v in t.items() if k != "listing"}

    out: dict = {}
    enqueues, settles = [], []
    for _ in range(21):
        enqueues.append(timed(lambda: services.execution_enqueue(job=objs["plain_job"])))
        (eid,) = claim_all()
        settles.append(settle(eid))
    out["plain_enqueue"] = enqueues[-1] | {"ms_p50": median([t["ms"] for t in enqueues[1:]])}
    out["plain_settle"] = settles[-1] | {"ms_p50": median([t["ms"] for t in settles[1:]])}
    edges = []
    for _ in range(7):  # chains of 3: the settles of the first two jobs each release one
        pipelines.pipeline_run_start(pipeline=objs["warmup"])
        for i in range(3):
            (eid,) = claim_all()
            timing = settle(eid)
            if i < 2:
                edges.append(timing)
    out["chain_settle"] = edges[-1] | {"ms_p50": median([t["ms"] for t in edges[2:]])}

    jobs = objs["fan_jobs"]
    flat_ids: list = []

    def flat():
        with transaction.atomic():
            flat_ids.extend(services.execution_enqueue(job=job).id for job in jobs)

    out["flat_enqueue"] = short(timed(flat))
    claimed = claim_all()
    for eid in claimed:
        agent_protocol.agent_settle(
            worker=worker,
            execution_id=eid,
            status="succeeded",
            exit_code=0,
            error="",
            log_bytes=0,
            log_truncated=False,
        )
    runs: list = []
    out["fan_start"] = short(
        timed(lambda: runs.append(pipelines.pipeline_run_start(pipeline=objs["fan"])))
    )
    run = runs[0]
    (root,) = claim_all()
    out["fan_out_settle"] = short(settle(root))
    middle = claim_all()
    timings = []
    profile = cProfile.Profile()
    for i, eid in enumerate(middle):
        if i == len(middle) // 2:
            profile.enable()
            timings.append(settle(eid))
            profile.disable()
        else:
            timings.append(settle(eid))
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    stats.sort_stats("cumulative").print_stats(r"pipelines/services|workermanager/services", 8)
    stats.sort_stats("tottime").print_stats(8)
    out["fan_in_settle"] = {
        "n": len(timings),
        "ms_p50": median([t["ms"] for t in timings]),
        "ms_first": timings[0]["ms"] if timings else None,
        "ms_last": timings[-1]["ms"] if timings else None,
        "queries_p50": median([t["queries"] for t in timings]),
        "sql_ms_p50": median([t["sql_ms"] for t in timings]),
        "total_s": sum(t["ms"] for t in timings) / 1000,
        "listing": timings[len(timings) // 2]["listing"] if timings else [],
        "rows_p50": median([sum(g["rows"] for g in t["by_kind"].values()) for t in timings]),
        "profile": stream.getvalue(),
    }
    (sink,) = claim_all()
    settle(sink)
    run.refresh_from_db()
    out["fan_status"] = run.status
    return out


# -- the run ---------------------------------------------------------------------------------


def fmt(value, spec=".1f") -> str:
    if value is None or value != value:
        return "-"
    return format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round")
    parser.add_argument("--rounds", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--chain", type=int, default=None, help="jobs in the chain (200)")
    parser.add_argument("--fan", type=int, default=None, help="width of the fan-out (1000)")
    parser.add_argument("--runs", type=int, default=None, help="concurrent runs (200)")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="after the rounds, time and profile the settles in-process (agents stopped)",
    )
    args = parser.parse_args()
    benchlib.run_in_project_venv()

    quick = args.quick
    sizes = {
        "chain": args.chain or (30 if quick else 200),
        "fan": args.fan or (100 if quick else 1000),
        "runs": args.runs or (20 if quick else 200),
        "plain": 30 if quick else 200,
    }
    rounds = args.rounds if args.rounds is not None else (1 if quick else 3)

    def _term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    results: dict = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": quick,
        "sizes": sizes,
        "rounds": [],
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "agents": f"{AGENTS} x runworker --concurrency {CONCURRENCY} --isolation none",
    }
    say(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    t_start = time.monotonic()
    failures: list[str] = []
    try:
        benchlib.recreate_database(DB, migrate=True)
        benchlib.setup_django(DATABASE_URL)
        from django.db import connection

        with connect() as conn:
            results["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
        code = benchlib.code_state()
        results["commit"] = code["head"][:7]
        results["dirty_files"] = sum(not line.startswith("??") for line in code["changed"])
        objs = seed(sizes)
        say(f"seeded: chain {sizes['chain']}, fan 1 -> {sizes['fan']} -> 1, chain of 5")

        agents = [start_agent(f"bench-pipelines-{i + 1}") for i in range(AGENTS)]
        for agent in agents:
            agent.wait_ready()
        with connect(DB) as conn:
            connection.ensure_connection()
            exclude = {connection.connection.info.backend_pid}
            exclude.add(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
            cpu = Cpu(agents, conn)
            # Warm-up (connections, code paths, the agents' caches), discarded.
            plain_dispatch(conn, objs["plain_job"], 5, agents)
            chain_edges(conn, objs["warmup"], 3, agents)
            for rnd in range(rounds):
                r: dict = {"loadavg": os.getloadavg()[0]}
                conn.execute("ANALYZE")
                r["plain"] = plain_dispatch(conn, objs["plain_job"], sizes["plain"], agents)
                say(
                    f"round {rnd + 1}: plain dispatch p50 "
                    f"{r['plain']['dispatch_ms']['p50']:.1f} ms, "
                    f"p99 {r['plain']['dispatch_ms']['p99']:.1f} ms"
                )
                r["chain"] = chain_edges(conn, objs["chain"], sizes["chain"], agents)
                say(
                    f"round {rnd + 1}: chain of {sizes['chain']} {r['chain']['status']}, edge "
                    f"p50 {r['chain']['edge_ms']['p50']:.1f} ms, "
                    f"p99 {r['chain']['edge_ms']['p99']:.1f} ms"
                )
                order = ("flat", "dag") if rnd % 2 == 0 else ("dag", "flat")
                for kind in order:
                    conn.execute("ANALYZE workermanager_execution")
                    if kind == "dag":
                        r["dag"] = fan_dag(conn, objs["fan"], sizes["fan"], cpu, exclude)
                    else:
                        r["flat"] = fan_flat(conn, objs["fan_jobs"], cpu, exclude)
                    say(
                        f"round {rnd + 1}: fan {kind} {r[kind]['status']} in "
                        f"{r[kind]['wall_s']:.2f} s (submit {r[kind]['submit_s']:.2f} s)"
                    )
                r["fan_ratio"] = r["dag"]["wall_s"] / r["flat"]["wall_s"]
                r["edge_ratio"] = r["chain"]["edge_ms"]["p50"] / r["plain"]["dispatch_ms"]["p50"]
                conn.execute("ANALYZE")
                r["runs"] = concurrent_runs(conn, objs["chain5"], sizes["runs"], cpu, exclude)
                say(
                    f"round {rnd + 1}: {sizes['runs']} runs {r['runs']['status']} in "
                    f"{r['runs']['wall_s']:.2f} s: {r['runs']['runs_per_s']:.1f} runs/s, "
                    f"{r['runs']['jobs_per_s']:.0f} jobs/s"
                )
                r["runs_vs_flat"] = r["runs"]["jobs_per_s"] / r["flat"]["rate"]
                for part in ("chain", "dag", "flat", "runs"):
                    if r[part]["status"] != "succeeded":
                        failures.append(
                            f"round {rnd + 1} {part}: {r[part]['status']} "
                            f"{r[part].get('state') or ''}"
                        )
                if r["plain"]["stuck"] or r["plain"]["failed"]:
                    failures.append(f"round {rnd + 1} plain: {r['plain']}")
                results["rounds"].append(r)
        for agent in agents:
            agent.stop()
        if args.diagnose:
            say("diagnosis: settles in-process, no agents")
            results["diagnose"] = diagnose(objs)
    finally:
        stop_all()
    results["failures"] = failures
    results["runtime_s"] = time.monotonic() - t_start
    out = benchlib.save_results("pipelines", results)
    print_report(results)
    print(f"\nraw figures: {out.relative_to(ROOT)}; runtime {results['runtime_s']:.0f} s")
    if failures:
        print("\n" + "!" * 78)
        print("FAILED: runs that did not finish in time or did not succeed:")
        for line in failures:
            print(f"  {line}")
        print("!" * 78)
        return 1
    return 0


def print_report(results: dict) -> None:
    rounds = results["rounds"]
    sizes = results["sizes"]
    if not rounds:
        print("\nno round measured")
        if results.get("diagnose"):
            print_diagnosis(results["diagnose"])
        return

    def med(path) -> float:
        values = []
        for r in rounds:
            v = r
            for key in path:
                v = v.get(key) if isinstance(v, dict) else None
            if isinstance(v, (int, float)):
                values.append(v)
        return median(values)

    def per_round(path, spec=".1f") -> str:
        values = []
        for r in rounds:
            v = r
            for key in path:
                v = v.get(key) if isinstance(v, dict) else None
            values.append(fmt(v, spec))
        return " / ".join(values)

    n = len(rounds)
    print()
    print(
        f"Pipeline-run benchmark  ({results['cpus']} cores, PostgreSQL "
        f"{results.get('postgres', '?')}, load {results['loadavg_at_start'][0]:.2f} at start"
        f"{', QUICK' if results['quick'] else ''})"
    )
    print(
        f"Hodei commit {results.get('commit', '?')} ({results.get('dirty_files', 0)} modified "
        f"tracked files); agents: {results['agents']}; {n} round(s), medians over rounds; "
        "1-min load when each round began: " + ", ".join(f"{r['loadavg']:.2f}" for r in rounds)
    )
    rows = [
        ("1. plain dispatch, created_at -> started_at", None, None, None),
        ("   p50 ms", ("plain", "dispatch_ms", "p50"), ".1f", ""),
        ("   p99 ms", ("plain", "dispatch_ms", "p99"), ".1f", ""),
        (
            "     created_at -> command spawned (agent log), p50 ms",
            ("plain", "to_spawn_ms", "p50"),
            ".0f",
            "",
        ),
        (
            f"2. edge, chain of {sizes['chain']}: parent finished_at -> child started_at",
            *[None] * 3,
        ),
        ("   p50 ms", ("chain", "edge_ms", "p50"), ".1f", "<= 20"),
        ("   p99 ms", ("chain", "edge_ms", "p99"), ".1f", "<= 100"),
        ("   p50 edge / p50 plain dispatch", ("edge_ratio",), ".2f", "<= 1.5"),
        (
            "     finished -> child released (available_at), p50 ms",
            ("chain", "release_ms", "p50"),
            ".1f",
            "",
        ),
        (
            "     released -> child claimed (started_at), p50 ms",
            ("chain", "claim_ms", "p50"),
            ".1f",
            "",
        ),
        (
            "     parent's end reported -> child spawned (agent logs), p50 ms",
            ("chain", "to_spawn_ms", "p50"),
            ".0f",
            "",
        ),
        (
            "     parent's end reported -> child spawned (agent logs), p99 ms",
            ("chain", "to_spawn_ms", "p99"),
            ".0f",
            "",
        ),
        ("     child claimed by the parent's agent", ("chain", "same_agent_share"), ".0%", ""),
        ("     chain wall s", ("chain", "wall_s"), ".2f", ""),
        (f"3. fan-out/fan-in 1 -> {sizes['fan']} -> 1 vs {sizes['fan'] + 2} flat", *[None] * 3),
        ("   wall s, DAG (call -> last finished_at)", ("dag", "wall_s"), ".2f", ""),
        ("   wall s, flat (call -> last finished_at)", ("flat", "wall_s"), ".2f", ""),
        ("   DAG / flat", ("fan_ratio",), ".2f", "<= 1.2"),
        ("     submit s, DAG", ("dag", "submit_s"), ".2f", ""),
        ("     submit s, flat", ("flat", "submit_s"), ".2f", ""),
        ("     root finished -> all middle released, ms", ("dag", "fan_out_release_ms"), ".0f", ""),
        ("     middle jobs/s (DAG) ", ("dag", "middle_rate"), ".0f", ""),
        ("     jobs/s (flat)", ("flat", "rate"), ".0f", ""),
        (
            "     fan-in edge: last middle finished -> sink started, ms",
            ("dag", "fan_in_edge_ms"),
            ".1f",
            "",
        ),
        ("     agent CPU ms/job, DAG", ("dag", "cpu", "agents_ms_per_job"), ".2f", ""),
        ("     agent CPU ms/job, flat", ("flat", "cpu", "agents_ms_per_job"), ".2f", ""),
        ("     PostgreSQL CPU ms/job, DAG", ("dag", "cpu", "db_ms_per_job"), ".2f", ""),
        ("     PostgreSQL CPU ms/job, flat", ("flat", "cpu", "db_ms_per_job"), ".2f", ""),
        ("     machine busy, DAG", ("dag", "cpu", "machine_busy"), ".0%", ""),
        ("     machine busy, flat", ("flat", "cpu", "machine_busy"), ".0%", ""),
        (f"4. {sizes['runs']} runs of a {CHAIN_RUN_JOBS}-job chain at once", *[None] * 3),
        ("   runs/s", ("runs", "runs_per_s"), ".1f", ""),
        ("   jobs/s", ("runs", "jobs_per_s"), ".0f", ""),
        ("   wall s (commit -> last run finished)", ("runs", "wall_s"), ".2f", ""),
        ("   start s (all runs, one transaction)", ("runs", "start_s"), ".2f", ""),
        ("   run done after commit, p50 s", ("runs", "run_done_s", "p50"), ".2f", ""),
        ("   jobs/s / flat jobs/s (part 3)", ("runs_vs_flat",), ".2f", ""),
        ("   agent CPU ms/job", ("runs", "cpu", "agents_ms_per_job"), ".2f", ""),
        ("   PostgreSQL CPU ms/job", ("runs", "cpu", "db_ms_per_job"), ".2f", ""),
        ("   machine busy", ("runs", "cpu", "machine_busy"), ".0%", ""),
    ]
    print(f"\n  {'':<62}{'median':>9}{'target':>9}  per round")
    for label, path, spec, target in rows:
        if path is None:
            print(f"  {label}")
            continue
        print(f"  {label:<62}{fmt(med(path), spec):>9}{target:>9}  {per_round(path, spec)}")
    for r in rounds[-1:]:
        for part in ("dag", "flat", "runs"):
            waits = r[part].get("waits") or []
            if waits:
                print(
                    f"\n  agents' PostgreSQL sessions during {part} (last round; 20-ms samples: "
                    "mean number of the 2 sessions active in each state):"
                )
                for w in waits:
                    print(f"    {w['active_share']:6.2f}  {w['wait']:<28} {w['query']}")
        states = {p: r[p]["state"] for p in ("chain", "dag", "runs") if r[p].get("state")}
        for part, state in states.items():
            if r[part]["status"] != "succeeded":
                print(f"\n  {part}: {r[part]['status']}: {state}")
    if results.get("diagnose"):
        print_diagnosis(results["diagnose"])


def print_diagnosis(diag: dict) -> None:
    print("\nDiagnosis: the same service calls in this process, no agents (--diagnose)")

    def show(label: str, t: dict, listing: bool = False) -> None:
        p50 = f", p50 {t['ms_p50']:.1f} ms" if "ms_p50" in t else ""
        print(
            f"  {label}: {t['ms']:.1f} ms{p50}, {t['queries']} statements "
            f"({t['sql_ms']:.1f} ms in the driver)"
        )
        if listing and t.get("listing"):
            for line in t["listing"]:
                print(f"      {line}")
        elif t.get("by_kind"):
            for kind, g in list(t["by_kind"].items())[:6]:
                print(f"      {g['count']:6d} x {kind:<58} {g['ms']:8.1f} ms {g['rows']:8d} rows")

    show("plain enqueue (execution_enqueue, one job)", diag["plain_enqueue"], True)
    show("plain settle (agent_settle)", diag["plain_settle"], True)
    show("chain settle (agent_settle of a job with one dependant)", diag["chain_settle"], True)
    show("flat enqueue of the fan's jobs, one transaction", diag["flat_enqueue"], True)
    show("fan run start (pipeline_run_start)", diag["fan_start"], True)
    show("fan-out: the root's settle (releases every middle job)", diag["fan_out_settle"], True)
    fi = diag["fan_in_settle"]
    print(
        f"  fan-in: settles of the middle jobs: p50 {fi['ms_p50']:.1f} ms "
        f"({fi['queries_p50']:.0f} statements, {fi['sql_ms_p50']:.1f} ms in the driver), "
        f"{fi['rows_p50']:.0f} rows; first {fmt(fi['ms_first'])} ms, last "
        f"{fmt(fi['ms_last'])} ms; {fi['total_s']:.1f} s for {fi['n']}; one of them:"
    )
    for line in fi["listing"]:
        print(f"      {line}")
    print("  cProfile of that settle (Hodei's services by cumulative time, then all by own time):")
    for line in fi["profile"].splitlines():
        skip = ("Ordered", "List reduced", "ncalls")
        if line.strip() and not line.strip().startswith(skip) and "function calls" not in line:
            print(f"      {line}")
    print(f"  fan run: {diag['fan_status']}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
