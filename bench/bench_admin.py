#!/usr/bin/env python3
"""Admin-at-scale benchmark: how fast the operators' console renders with 10^6
executions and 10^7 log lines in PostgreSQL.

    python3 bench/bench_admin.py                       # 1,000,000 executions, 10,000,000 log lines
    python3 bench/bench_admin.py --executions 100000 --log-lines 1000000
    python3 bench/bench_admin.py --reuse               # keep an already seeded database
    python3 bench/bench_admin.py --reuse --explain     # plus EXPLAIN ANALYZE of slow queries

It re-executes itself under the project's .venv, drops and recreates the database
`hodei_bench_admin` on 127.0.0.1:5432 (user postgres), migrates it with `manage.py
migrate`, seeds it with PostgreSQL COPY (psycopg 3 `cursor.copy()`, secondary indexes
dropped during the load and rebuilt after it, `COPY ... FREEZE` for the two big tables),
runs VACUUM ANALYZE and CHECKPOINT, then renders each admin page in-process with
Django's test Client as a logged-in superuser: one warm-up request, then --repeat timed
ones (median and max), with the number of SQL queries and the slowest query of each
page. See docs/benchmarks.md, section "Admin at scale".

The data (all times relative to the moment of seeding):
  * 200 pipelines, 2,000 jobs (a few run very often: Zipf-like weights), 20 workers of
    5 types, capacity 64 each;
  * N executions spread uniformly over the last 30 days, ids UUIDv7-like (the millisecond
    of created_at in the top 48 bits, so id order is creation order, as hodei.lib.ids);
    the newest 0.3 % queued (a backlog), 0.1 % running among the next ones, the rest
    mostly succeeded with failed / timed_out / cancelled / lost; 5 % ad-hoc (no job);
  * M log chunks: none for queued executions, M spread evenly (seq 0..k-1) over the
    others, each chunk one to three short lines.

With --reuse and data older than an hour, `hodei.lib.clock.now` is pinned to the seeding
time, so the dashboard's "last 24 hours" still covers seeded data.
"""

import argparse
import json
import random
import time
from datetime import UTC, datetime, timedelta

from benchlib import (
    Seeder,
    connect,
    copy_text,
    db_url,
    median,
    recreate_database,
    run_in_project_venv,
    say,
    setup_django,
    spread,
)

DB = "hodei_bench_admin"
LOGS = "workermanager_executionlog"

N_PIPELINES = 200
N_JOBS = 2_000
WORKER_TYPES = ["default", "rust", "python", "docker", "gpu"]
N_WORKERS = 20
WORKER_CAPACITY = 64
DAYS = 30
TERMINAL_MIX = [  # status, weight
    ("succeeded", 0.880),
    ("failed", 0.070),
    ("timed_out", 0.015),
    ("cancelled", 0.025),
    ("lost", 0.010),
]
TRIGGER_MIX = [("schedule", 0.62), ("api", 0.25), ("retry", 0.06), ("admin", 0.04), ("cli", 0.03)]
SUPERUSER = "bench-admin"
COMMANDS = [
    "make build",
    "make test",
    "cargo build --release\ncargo test",
    "python -m pytest -q",
    "./scripts/deploy.sh staging",
    "docker build -t app:latest .",
    "npm ci && npm run lint",
    "pg_dump app | gzip > /backups/app.sql.gz",
    "terraform plan -out plan.bin",
    "rsync -a dist/ web01:/srv/app/",
]
MSGS_OUT = [
    "Cloning into 'repo'...\nremote: Enumerating objects: 1532, done.",
    "Compiling app v0.1.0 (/work/repo)",
    "   Compiling serde v1.0.210\n   Compiling tokio v1.40.0\n   Compiling hyper v1.4.1",
    "collected 412 items",
    "tests/test_api.py ........................................ [ 42%]",
    "tests/test_models.py ..................................... [ 87%]",
    "Step 4/12 : RUN pip install -r requirements.txt",
    "Successfully built 3f2a9c1d8e7b",
    "added 1204 packages in 14s",
    "Plan: 3 to add, 1 to change, 0 to destroy.",
    "sent 48,211,930 bytes  received 1,204 bytes  9,642,626.80 bytes/sec",
    "Uploading artifact build/app.tar.gz (48.2 MiB)",
    "INFO  migrating database: 0 pending migrations",
    "Running 'make check'...\nok  \tgithub.com/acme/app/internal/store\t0.412s",
]
MSGS_ERR = [
    "warning: unused variable: `cfg`\n  --> src/main.rs:42:9",
    "npm WARN deprecated inflight@1.0.6: This module is not supported",
    "E   AssertionError: expected 200, got 503",
    'error: could not compile `app` (bin "app") due to 2 previous errors',
    "curl: (28) Operation timed out after 30001 milliseconds",
]
MSGS_FIRST = ["+ set -euo pipefail", "+ cd /work/repo", "Starting on worker (pid 4{}{})"]
MSGS_OK = ["Done.", "==> 412 passed in 38.21s", "Deployed revision 7f3c2e1 to staging"]
MSGS_BAD = [
    "make: *** [Makefile:12: test] Error 2",
    "FAILED tests/test_api.py::test_health",
    "Killed",
]


# -- database ----------------------------------------------------------------------------


def db_has_data(executions: int, log_lines: int) -> bool:
    try:
        with connect(DB) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM workermanager_execution),"
                " (SELECT reltuples::bigint FROM pg_class"
                "  WHERE oid = 'workermanager_executionlog'::regclass),"
                " (SELECT to_regclass('bench_admin_meta') IS NOT NULL)"
            ).fetchone()
    except Exception:
        return False
    n_exec, est_logs, has_meta = row
    return has_meta and n_exec == executions and abs(est_logs - log_lines) <= 0.05 * log_lines


# -- seeding -----------------------------------------------------------------------------


def seed(n_exec: int, n_logs: int, seed_value: int) -> dict:
    from orchestrator.models import Job, Pipeline
    from workermanager.models import Worker

    rng = random.Random(seed_value)
    now = datetime.now(UTC).replace(microsecond=0)
    now_us = int(now.timestamp()) * 1_000_000
    timings = {}
    t_all = time.perf_counter()
    seeder = Seeder(DB, freeze=True, rng=rng, now_us=now_us)
    ts, new_id = seeder.ts, seeder.new_id

    # -- pipelines, jobs, workers ---------------------------------------------------
    t0 = time.perf_counter()
    pipelines = []
    for i in range(N_PIPELINES):
        created = now_us - rng.randrange(31 * 86400, 365 * 86400) * 1_000_000
        pipelines.append(new_id(created))
        seeder.add(
            Pipeline,
            id=pipelines[-1],
            name=f"project-{i:03d}",
            description=f"Build, test and ship project {i}",
            status="archived" if i % 25 == 0 else ("paused" if i % 40 == 1 else "active"),
            created_at=ts(created),
            updated_at=ts(created),
        )
    jobs = []  # (id, command, type, worker_type, timeout)
    env = json.dumps({"CI": "1"})
    for i in range(N_JOBS):
        created = now_us - rng.randrange(31 * 86400, 300 * 86400) * 1_000_000
        command = copy_text(COMMANDS[i % len(COMMANDS)])
        ctype = "python" if i % 17 == 0 else ("sh" if i % 11 == 0 else "bash")
        worker_type = "" if i % 2 == 0 else WORKER_TYPES[i % len(WORKER_TYPES)]
        jobs.append(
            (new_id(created), command, ctype, worker_type, [None, 300, 600, 1800, 3600][i % 5])
        )
        seeder.add(
            Job,
            id=jobs[-1][0],
            name=f"job-{i:04d}",
            command=command,
            type=ctype,
            worker_type=worker_type,
            env=env,
            timeout_seconds=jobs[-1][4],
            max_retries=i % 3,
            created_at=ts(created),
            updated_at=ts(created),
            pipeline_id=pipelines[i % N_PIPELINES],
        )
    workers_by_type: dict[str, list[str]] = {t: [] for t in WORKER_TYPES}
    workers = []
    for i in range(N_WORKERS):
        wtype = WORKER_TYPES[i % len(WORKER_TYPES)]
        registered = now_us - (DAYS + 1) * 86400 * 1_000_000 + i * 1_000_000
        workers.append(new_id(registered))
        workers_by_type[wtype].append(workers[-1])
        offline = i >= N_WORKERS - 2
        seeder.add(
            Worker,
            id=workers[-1],
            name=f"{wtype}-{i:02d}",
            type=wtype,
            labels=json.dumps({"zone": f"z{i % 3}"}),
            capacity=WORKER_CAPACITY,
            hostname=f"host{i:02d}.internal",
            version="0.1.0",
            pid=1000 + i,
            status="offline" if offline else "online",
            registered_at=ts(registered),
            last_heartbeat_at=ts(now_us - (3600 if offline else 2) * 1_000_000),
            stopped_at=ts(now_us - 3600 * 1_000_000) if offline else None,
        )
    seeder.sync()
    timings["small tables"] = time.perf_counter() - t0

    # -- executions -----------------------------------------------------------------
    t0 = time.perf_counter()
    start_us = now_us - DAYS * 86400 * 1_000_000
    created = spread(n_exec, start_us, now_us - 1_000_000, rng)
    n_queued = max(1, n_exec * 3 // 1000)
    n_running = max(1, n_exec // 1000)
    status = rng.choices(
        [s for s, _ in TERMINAL_MIX], weights=[w for _, w in TERMINAL_MIX], k=n_exec
    )
    for i in range(n_exec - n_queued, n_exec):
        status[i] = "queued"
    window = list(range(max(0, n_exec - n_queued - 2 * n_running), n_exec - n_queued))
    for i in rng.sample(window, min(n_running, len(window))):
        status[i] = "running"
    job_weights = [1.0 / (k + 1) ** 0.8 for k in range(N_JOBS)]  # Zipf-like popularity
    job_idx = rng.choices(range(N_JOBS), weights=job_weights, k=n_exec)
    triggers = rng.choices(
        [t for t, _ in TRIGGER_MIX], weights=[w for _, w in TRIGGER_MIX], k=n_exec
    )

    # Log chunks: none for queued executions, n_logs spread evenly over the others.
    n_with_logs = n_exec - status.count("queued")
    base_k, extra_k = divmod(n_logs, n_with_logs) if n_with_logs else (0, 0)
    p_out, p_err, p_first, p_ok, p_bad = (
        [copy_text(m) for m in pool] for pool in (MSGS_OUT, MSGS_ERR, MSGS_FIRST, MSGS_OK, MSGS_BAD)
    )
    nbytes = {
        copy_text(m): len(m.encode()) for m in MSGS_OUT + MSGS_ERR + MSGS_FIRST + MSGS_OK + MSGS_BAD
    }

    def chunks_for(i: int, k: int, st: str) -> list[tuple[str, str]]:
        """(stream, message) of execution i's k chunks, deterministic."""
        out = [("system", p_first[i % len(p_first)])]
        for seq in range(1, k - 1):
            h = (i * 31 + seq * 7) % 97
            out.append(
                ("stderr", p_err[h % len(p_err)]) if h < 9 else ("stdout", p_out[h % len(p_out)])
            )
        if k >= 2:
            if st == "succeeded" or st == "running":
                out.append(("stdout", p_ok[i % len(p_ok)]))
            else:
                out.append(("stderr", p_bad[i % len(p_bad)]))
        return out[:k]

    with_logs = []  # (i, id, start, finished, k, status) for the log pass
    seen_with_logs = 0
    for i in range(n_exec):
        c_us = created[i]
        eid = new_id(c_us)
        st = status[i]
        if rng.random() < 0.05:
            job_id, command, ctype, wtype, timeout = None, "./adhoc.sh --once", "bash", "", None
        else:
            job_id, command, ctype, wtype, timeout = jobs[job_idx[i]]
        attempt = 2 if triggers[i] == "retry" else 1
        started = finished = deadline = None
        exit_code, error, worker_id, cancel = None, "", None, "f"
        if st != "queued" and not (st == "cancelled" and i % 2 == 0):
            started = c_us + rng.randrange(20_000, 3_000_000)
            pool = workers_by_type[wtype] if wtype else workers
            worker_id = pool[i % len(pool)]
            if timeout:
                deadline = started + timeout * 1_000_000
        if st not in ("queued", "running"):
            if started is None:  # cancelled while queued
                finished = c_us + rng.randrange(1_000_000, 60_000_000)
            elif st == "timed_out":
                finished = started + (timeout or 600) * 1_000_000
            else:
                finished = started + int(rng.lognormvariate(16.5, 1.3))  # median ~15 s
            finished = min(finished, now_us)
            if st == "succeeded":
                exit_code = 0
            elif st == "failed":
                exit_code = (1, 2, 137)[i % 3]
            elif st == "timed_out":
                exit_code, error = -15, f"Timed out after {timeout or 600} s."
            elif st == "cancelled":
                exit_code, cancel = (None if started is None else -15), "t"
            elif st == "lost":
                error = "Worker stopped heartbeating (3 missed heartbeats)."
        k = 0
        if st != "queued":
            k = base_k + (1 if seen_with_logs < extra_k else 0)
            seen_with_logs += 1
        if k:
            with_logs.append((i, eid, c_us if started is None else started, finished, k, st))
        seeder.execution(
            id=eid,
            created_us=c_us,
            status=st,
            started_us=started,
            finished_us=finished,
            job_id=job_id,
            command=command,
            type=ctype,
            worker_type=wtype,
            timeout_seconds=timeout,
            exit_code=exit_code,
            error=error,
            worker_id=worker_id,
            attempt=attempt,
            retries_used=attempt - 1,
            trigger=triggers[i],
            cancel_requested=cancel,
            deadline_at=None if deadline is None else ts(deadline),
            log_bytes=sum(nbytes[m] for _, m in chunks_for(i, k, st)) if k else 0,
        )
    seeder.sync()
    timings["executions COPY"] = time.perf_counter() - t0
    say(f"executions: {n_exec:,} rows copied in {timings['executions COPY']:.1f} s")

    # -- logs -----------------------------------------------------------------------
    t0 = time.perf_counter()
    for n, (i, eid, start, finished, k, st) in enumerate(with_logs):
        seeder.logs(eid, chunks_for(i, k, st), start, finished)
        if n and n % 200_000 == 0:
            say(f"  logs: {seeder.rows[LOGS]:,} rows, {time.perf_counter() - t0:.0f} s")
    seeder.sync()
    n_log_rows = seeder.rows[LOGS]
    timings["logs COPY"] = time.perf_counter() - t0
    say(f"logs: {n_log_rows:,} rows copied in {timings['logs COPY']:.1f} s")

    # -- indexes back, job status ----------------------------------------------------
    seeder.close()
    timings["index rebuild"] = seeder.rebuild_seconds
    with connect(DB) as conn:
        # A job's status mirrors its newest execution.
        conn.execute(
            """
            UPDATE orchestrator_job j SET status = e.status
            FROM (SELECT DISTINCT ON (job_id) job_id, status FROM workermanager_execution
                  WHERE job_id IS NOT NULL ORDER BY job_id, id DESC) e
            WHERE e.job_id = j.id
            """
        )
        conn.execute(
            "CREATE TABLE bench_admin_meta"
            " (seeded_at timestamptz, executions int, log_lines bigint)"
        )
        conn.execute("INSERT INTO bench_admin_meta VALUES (%s, %s, %s)", [now, n_exec, n_log_rows])
        t0 = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        # Write the loaded data out now, not while the pages are being timed.
        conn.execute("CHECKPOINT")
    timings["vacuum analyze + checkpoint"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    return timings


def table_sizes() -> list[tuple[str, str, str]]:
    with connect(DB) as conn:
        return conn.execute(
            """
            SELECT c.relname, pg_size_pretty(pg_table_size(c.oid)),
                   pg_size_pretty(pg_indexes_size(c.oid))
            FROM pg_class c WHERE c.relname IN ('workermanager_execution',
                                                'workermanager_executionlog')
            ORDER BY c.relname
            """
        ).fetchall()


# -- measuring ---------------------------------------------------------------------------


def pick_targets() -> dict:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT seeded_at FROM bench_admin_meta")
        seeded_at = cur.fetchone()[0]
        # A finished execution with exactly 10 chunks, from the middle of the range.
        cur.execute(
            """
            SELECT e.id FROM workermanager_execution e
            WHERE e.status = 'succeeded' AND e.created_at < %s
              AND (SELECT count(*) FROM workermanager_executionlog l
                   WHERE l.execution_id = e.id) = 10
            ORDER BY e.created_at DESC LIMIT 1
            """,
            [seeded_at - timedelta(days=DAYS / 2)],
        )
        row = cur.fetchone()
        if row is None:  # fewer chunks per execution than 10: take any with logs
            cur.execute(
                "SELECT execution_id FROM workermanager_executionlog ORDER BY id DESC LIMIT 1"
            )
            row = cur.fetchone()
        execution_id = row[0]
        cur.execute(
            "SELECT count(*) FROM workermanager_executionlog WHERE execution_id = %s",
            [execution_id],
        )
        execution_chunks = cur.fetchone()[0]
        cur.execute(
            "SELECT job_id, count(*) FROM workermanager_execution WHERE job_id IS NOT NULL"
            " GROUP BY job_id ORDER BY 2 DESC LIMIT 1"
        )
        busiest_job, busiest_count = cur.fetchone()
        cur.execute(
            "SELECT date_trunc('month', created_at AT TIME ZONE 'UTC') m, count(*)"
            " FROM workermanager_execution GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
        )
        month, month_count = cur.fetchone()
        cur.execute("SELECT count(*) FROM workermanager_execution")
        n_exec = cur.fetchone()[0]
        cur.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE relname = 'workermanager_executionlog'"
        )
        n_logs = cur.fetchone()[0]
        cur.execute(
            "SELECT status, count(*) FROM workermanager_execution GROUP BY 1 ORDER BY 2 DESC"
        )
        mix = cur.fetchall()
    return {
        "seeded_at": seeded_at,
        "execution_id": execution_id,
        "execution_chunks": execution_chunks,
        "busiest_job": busiest_job,
        "busiest_count": busiest_count,
        "month": month,
        "month_count": month_count,
        "n_exec": n_exec,
        "n_logs": n_logs,
        "mix": mix,
    }


def pages(t: dict) -> list[tuple[str, str]]:
    e = "/admin/workermanager/execution/"
    return [
        ("dashboard", "/admin/"),
        ("executions (default)", e),
        ("executions status=failed", f"{e}?status__exact=failed"),
        ("executions status=queued", f"{e}?status__exact=queued"),
        (
            f"executions month {t['month']:%Y-%m}",
            f"{e}?created_at__year={t['month'].year}&created_at__month={t['month'].month}",
        ),
        ("executions search by id", f"{e}?q={t['execution_id']}"),
        ("executions job=<busiest>", f"{e}?job__id__exact={t['busiest_job']}"),
        ("executions page 50", f"{e}?p=50"),
        ("execution detail", f"{e}{t['execution_id']}/change/"),
        ("execution tail", f"{e}{t['execution_id']}/tail/?offset=0"),
        ("workers changelist", "/admin/workermanager/worker/"),
        ("jobs changelist", "/admin/orchestrator/job/"),
        ("job change (busiest)", f"/admin/orchestrator/job/{t['busiest_job']}/change/"),
        # Beyond the brief: other filters an operator clicks.
        ("extra: status=succeeded", f"{e}?status__exact=succeeded"),
        ("extra: trigger=cli", f"{e}?trigger__exact=cli"),
        ("extra: worker_type=gpu", f"{e}?worker_type__exact=gpu"),
        ("extra: text search", f"{e}?q=deploy"),
    ]


def measure(client, url: str, repeat: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)  # warm-up
    assert response.status_code == 200, (url, response.status_code)
    times, runs = [], []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            response = client.get(url)
            elapsed = time.perf_counter() - t0
        assert response.status_code == 200, (url, response.status_code)
        times.append(elapsed * 1000)
        runs.append([(float(q["time"]) * 1000, q["sql"]) for q in ctx.captured_queries])
    # The slowest query of each run, then its median over the runs.
    slowest = [max(run, default=(0.0, "")) for run in runs]
    slowest_ms = median(s[0] for s in slowest)
    # For diagnosis: per distinct query position, the median time across runs.
    per_query = []
    for idx in range(len(runs[0])):
        ts_ = [run[idx][0] for run in runs if idx < len(run)]
        per_query.append((median(ts_), runs[0][idx][1]))
    per_query.sort(reverse=True)
    return {
        "median": median(times),
        "max": max(times),
        "queries": len(runs[-1]),
        "slowest_ms": slowest_ms,
        "db_ms": median(sum(q[0] for q in run) for run in runs),
        "top": per_query[:4],
    }


def explain(sql: str) -> str:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        return "\n".join(r[0] for r in cur.fetchall())


def run_measurements(args, label: str) -> list[tuple[str, str, dict]]:
    from unittest import mock

    from django.contrib.auth import get_user_model
    from django.test import Client

    t = pick_targets()
    age = datetime.now(UTC) - t["seeded_at"]
    patcher = None
    if age > timedelta(hours=1):
        say(f"data seeded {age} ago: pinning hodei.lib.clock.now to {t['seeded_at']:%F %H:%M}")
        patcher = mock.patch("hodei.lib.clock.now", return_value=t["seeded_at"])
        patcher.start()
    print(f"\nData: {t['n_exec']:,} executions, ~{t['n_logs']:,} log chunks")
    print("Status mix: " + ", ".join(f"{s} {n:,}" for s, n in t["mix"]))
    print(
        f"Detail page execution {t['execution_id']} ({t['execution_chunks']} chunks); "
        f"busiest job {t['busiest_job']} ({t['busiest_count']:,} executions); "
        f"month {t['month']:%Y-%m} ({t['month_count']:,} executions)"
    )
    for name, data, index in table_sizes():
        print(f"{name}: table {data}, indexes {index}")

    User = get_user_model()
    user = User.objects.filter(username=SUPERUSER).first()
    if user is None:
        user = User.objects.create_superuser(SUPERUSER, "bench@example.invalid", None)
    client = Client()
    client.force_login(user)

    results = []
    for name, url in pages(t):
        if args.only and args.only not in name:
            continue
        r = measure(client, url, args.repeat)
        results.append((name, url, r))
        say(f"{label}: {name}: median {r['median']:.0f} ms, {r['queries']} queries")
    if patcher:
        patcher.stop()

    print(f"\nRender times, {label}: {args.repeat} requests after one warm-up (ms)\n")
    print("| page | median ms | max ms | queries | SQL ms (median) | slowest query ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, _url, r in results:
        print(
            f"| {name} | {r['median']:.0f} | {r['max']:.0f} | {r['queries']} "
            f"| {r['db_ms']:.0f} | {r['slowest_ms']:.0f} |"
        )

    print("\nSlowest queries of pages slower than the threshold:")
    for name, url, r in results:
        if r["median"] < args.threshold:
            continue
        print(f"\n== {name} ({url}): median {r['median']:.0f} ms")
        for ms, sql in r["top"][:3]:
            if ms < 5:
                continue
            print(f"-- {ms:.0f} ms: {sql[:600]}")
            if args.explain:
                print(explain(sql))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--log-lines", type=int, default=10_000_000)
    parser.add_argument("--reuse", action="store_true", help="keep a seeded database")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threshold", type=float, default=300, help="ms; slow-page report")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE slow queries")
    parser.add_argument("--only", default="", help="measure only pages whose name has this")
    args = parser.parse_args()

    run_in_project_venv()
    url = db_url(DB)
    fresh = not (args.reuse and db_has_data(args.executions, args.log_lines))
    if fresh:
        say(f"seeding {DB}: {args.executions:,} executions, {args.log_lines:,} log lines")
        recreate_database(DB, migrate=True)
    else:
        say(f"reusing {DB}")
    setup_django(url, HODEI_SERVICE="orchestrator", HODEI_LOG_LEVEL="WARNING")
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
    if fresh:
        timings = seed(args.executions, args.log_lines, args.seed)
        print("\nSeeding (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    run_measurements(args, "as the application is")


if __name__ == "__main__":
    main()
