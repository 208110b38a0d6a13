#!/usr/bin/env python3
"""Retention benchmark: `manage.py purge_executions` deletes 1,000,000 old finished
executions with their logs (3 chunks each) while the worker manager's API serves a
steady load; the API's latency during the purge is compared with a baseline taken just
before it, on the same server, the same data and the same load.

    python3 bench/bench_retention.py                    # 1,000,000 executions, ~6-8 min
    python3 bench/bench_retention.py --executions 100000

It re-executes itself under the project's .venv (run `make install` first), drops and
recreates the database `hodei_bench_retention`, migrates it, seeds it with PostgreSQL COPY
(ids are UUIDv7 of each row's created_at, as the application makes them), starts the
worker manager API under gunicorn as a real process, and measures. Raw figures go to
var/bench-results/retention-<time>.json, process output to var/bench-logs/. See
docs/benchmarks.md, section "Retention".

Every process it starts is stopped in a finally block (SIGTERM, then SIGKILL).
"""

import argparse
import itertools
import os
import re
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial

import benchlib
from benchlib import ROOT, VENV_PY, Proc, connect, loadavg, machine_cpu, pct, say

DB = "hodei_bench_retention"
DATABASE_URL = benchlib.db_url(DB)
PURGE_APP_NAME = "hodei-bench-purge"

RETENTION_DAYS = 30  # the default; the benchmark does not set HODEI_RETENTION_DAYS
LOG_CHUNKS = 3
JOBS = 20
ACTIVE_OLD = 200  # old queued/running executions: never deleted
FIRES = 10_000  # schedule history rows pointing at old executions (SET NULL on purge)
BATCH_LINE = re.compile(r"^batch \d+: .*, ([\d.]+) s, .* \((\d+) ms\)$")
OUTCOMES = [("succeeded", 0)] * 8 + [("failed", 1), ("timed_out", None)]
LINE = "compiling module {i}: ok (cache hit ratio 0.87, 1342 objects, 12.4 MiB)\\n"
DAY = 86_400_000_000  # microseconds

hodei_env = partial(benchlib.hodei_env, DATABASE_URL)
manage = partial(benchlib.manage, DATABASE_URL)


# -- seeding with COPY ---------------------------------------------------------------------


def seed(n: int, now: datetime) -> dict:
    """``n`` finished executions between 95 and 35 days old (1 in 10 a retry of the one
    before), ACTIVE_OLD queued/running ones 60 days old, ``n // 100`` finished ones of the
    last 29 days (one a retry of an old execution), LOG_CHUNKS log chunks each, and
    FIRES schedule history rows pointing at old executions."""
    from orchestrator.models import Job, Pipeline
    from scheduler.models import Schedule, ScheduleFire

    pipeline = Pipeline.objects.create(name="bench")
    jobs = [
        Job.objects.create(pipeline=pipeline, name=f"job-{i}", command="make build")
        for i in range(JOBS)
    ]
    schedule = Schedule.objects.create(job=jobs[0], cron="0 * * * *")
    job_ids = [job.id.hex for job in jobs]
    now_us = int(now.timestamp() * 1_000_000)
    counter = itertools.count()
    t0 = time.monotonic()
    with benchlib.Seeder(DB, now_us=now_us) as seeder:

        def add(created_us: int, status: str, exit_code, finished=True, retry_of=None) -> str:
            i = next(counter)
            message = LINE.format(i=i) * 2
            return seeder.execution(
                created_us=created_us,
                status=status,
                started_us=None if status == "queued" else created_us,
                finished_us=created_us + 1_000_000 * (1 + i % 60) if finished else None,
                logs=[("stdout", message)] * (LOG_CHUNKS - 1) + [("stderr", message)],
                job_id=job_ids[i % JOBS] if i % 10 else None,
                exit_code=exit_code,
                retry_of_id=retry_of,
                attempt=2 if retry_of else 1,
                command=f"make build-{i % 97}",
            )

        old_ids = []
        previous = never_retried = None
        for i, created_us in enumerate(benchlib.spread(n, now_us - 95 * DAY, now_us - 35 * DAY)):
            status, code = OUTCOMES[i % len(OUTCOMES)]
            if i % 50 == 49:
                status, code = "lost", None
            previous = add(created_us, status, code, retry_of=previous if i % 10 == 9 else None)
            if i % max(n // FIRES, 1) == 0 and len(old_ids) < FIRES:
                old_ids.append(previous)
            if i % 10 == 0:
                never_retried = previous  # rows i % 10 == 8 are the retried ones
            if i and i % 200_000 == 0:
                say(f"  {i:,} old executions written")
        for i in range(ACTIVE_OLD):
            add(now_us - 60 * DAY + i * 1_000_000, "queued" if i % 2 else "running", None, False)
        recent = max(n // 100, 100)
        recent_ids = [
            # The newest one retries an old execution (its retry_of becomes NULL).
            add(
                created_us,
                *OUTCOMES[i % len(OUTCOMES)],
                retry_of=never_retried if i == recent - 1 else None,
            )
            for i, created_us in enumerate(
                benchlib.spread(recent, now_us - 29 * DAY, now_us - DAY // 24)
            )
        ]
        for k, old_id in enumerate(old_ids):
            seeder.add(
                ScheduleFire,
                schedule_id=schedule.id.hex,
                slot_at=seeder.ts(now_us - 95 * DAY + k * 60_000_000),
                outcome="fired",
                execution_id=old_id,
            )
        seeder.sync()
        copy_seconds = time.monotonic() - t0
    load_seconds = time.monotonic() - t0
    rows = seeder.rows["workermanager_execution"] + seeder.rows["workermanager_executionlog"]
    t1 = time.monotonic()
    with connect(DB) as conn:
        for table in (*benchlib.EXECUTION_TABLES, "scheduler_schedulefire"):
            conn.execute(f"VACUUM ANALYZE {table}")
    return {
        "old": n,
        "active_old": ACTIVE_OLD,
        "recent": recent,
        "fires": len(old_ids),
        "rows": rows,
        "copy_seconds": round(copy_seconds, 1),
        "copy_rows_per_second": round(rows / copy_seconds),
        "with_indexes_seconds": round(load_seconds, 1),
        "vacuum_analyze_seconds": round(time.monotonic() - t1, 1),
        "recent_ids": recent_ids,
        "retrying_id": recent_ids[-1],
    }


def table_stats() -> dict:
    with connect(DB) as conn:
        rows = conn.execute(
            "SELECT relname, pg_total_relation_size(relid), n_live_tup, n_dead_tup "
            "FROM pg_stat_user_tables WHERE relname IN "
            "('workermanager_execution', 'workermanager_executionlog')"
        ).fetchall()
    return {name: {"bytes": size, "live": live, "dead": dead} for name, size, live, dead in rows}


# -- plans -----------------------------------------------------------------------------------


def plans(now: datetime) -> dict:
    """EXPLAIN of every statement a purge batch runs, on the seeded data: the SELECTs
    run (ANALYZE), the writes only planned."""
    from django.db import connection

    from workermanager import retention
    from workermanager.choices import TERMINAL
    from workermanager.models import Execution

    cutoff = now - timedelta(days=RETENTION_DAYS)
    middle = Execution.objects.filter(created_at__lt=cutoff).order_by("created_at")
    sample = list(middle.values_list("created_at", "id")[200_000:200_001]) or list(
        middle.values_list("created_at", "id")[:1]
    )
    after = sample[0]
    window = retention.age_window_query(cutoff=cutoff, after=after, limit=1000)
    ids = [row[0] for row in window]
    job = Execution.objects.exclude(job=None).values_list("job_id", flat=True).first()
    job_cursor = (
        Execution.objects.filter(job_id=job, id__lt=ids[0]).order_by("-id").values("id")[:1]
    )
    job_window = retention.job_window_query(
        job_id=job,
        after_id=job_cursor[0]["id"] if job_cursor else None,
        up_to_id=retention._last_uuid7_of(cutoff),
        limit=1000,
    )
    job_ids = list(job_window)
    in_list = ", ".join(f"'{i}'::uuid" for i in ids)
    in_100 = ", ".join(f"'{i}'::uuid" for i in ids[:100])
    analyzed = {"analyze": True, "buffers": True}
    out = {
        "age window (SELECT)": window.explain(**analyzed),
        "job window (SELECT ids)": job_window.explain(**analyzed),
        "job window rows (SELECT by id)": Execution.objects.filter(id__in=job_ids)
        .values_list("id", "created_at", "finished_at", "job_id", "status")
        .explain(**analyzed),
        "job newest (SELECT ids, for retention_count)": retention.job_newest_query(
            job_id=job, before_id=None, limit=1000
        ).explain(**analyzed),
        "rows to delete (SELECT)": Execution.objects.filter(id__in=ids, status__in=TERMINAL)
        .only("id")
        .explain(**analyzed),
    }
    statements = {
        "logs (DELETE)": (
            f"DELETE FROM workermanager_executionlog WHERE execution_id IN ({in_list})"
        ),
        "retries (UPDATE SET NULL)": (
            "UPDATE workermanager_execution SET retry_of_id = NULL "
            f"WHERE retry_of_id IN ({in_list})"
        ),
        "schedule history (UPDATE SET NULL)": (
            "UPDATE scheduler_schedulefire SET execution_id = NULL "
            f"WHERE execution_id IN ({in_list})"
        ),
        "executions (DELETE, 100 ids)": (
            f"DELETE FROM workermanager_execution WHERE id IN ({in_100})"
        ),
    }
    with connection.cursor() as cursor:
        for name, sql in statements.items():
            cursor.execute("EXPLAIN " + sql)
            out[name] = "\n".join(row[0] for row in cursor.fetchall())
    # The id lists make plans unreadable: keep their size, not their contents.
    return {
        name: re.sub(r"'\{[^}]*\}'", lambda m: f"'{{{m[0].count(',') + 1} ids}}'", plan)
        for name, plan in out.items()
    }


def seq_scans_on_big_tables(explained: dict) -> list[str]:
    """Plans that read a big table whole (a small table such as the schedule history
    of this benchmark may rightly be read whole)."""
    big = ("workermanager_execution", "workermanager_executionlog")
    return [
        name
        for name, plan in explained.items()
        if any(f"Seq Scan on {table} " in plan or f"Seq Scan on {table}\n" in plan for table in big)
    ]


# -- load ------------------------------------------------------------------------------------


class Load:
    """GETs at a steady ``rate`` from a thread pool, alternating the list of the 50 newest
    executions and one recent execution; each sample is (sent at, seconds, status, kind).
    Requests are scheduled on the clock, not after the previous reply, so a slow server
    shows as latency rather than as fewer requests."""

    def __init__(self, base: str, token: str, rate: float, recent_ids: list[str]):
        import requests

        self.requests = requests
        self.base = base
        # A new connection per request: a kept-alive one that the server closed while it
        # sat idle would fail the next request on the client's side, not the server's.
        self.headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
        self.rate = rate
        self.recent_ids = recent_ids
        self.samples: list[tuple[float, float, str, str]] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(max_workers=32)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join()
        self.pool.shutdown(wait=True)

    def _session(self):
        if not hasattr(self.local, "session"):
            self.local.session = self.requests.Session()
        return self.local.session

    def _one(self, k: int) -> None:
        if k % 2:
            kind = "detail"
            url = f"{self.base}/api/v1/executions/{self.recent_ids[k % len(self.recent_ids)]}"
        else:
            kind, url = "list", f"{self.base}/api/v1/executions?limit=50"
        sent = time.monotonic()
        try:
            status = str(self._session().get(url, headers=self.headers, timeout=30).status_code)
        except self.requests.RequestException as exc:
            status = type(exc).__name__
        with self.lock:
            self.samples.append((sent, time.monotonic() - sent, status, kind))

    def _run(self) -> None:
        t0 = time.monotonic()
        k = 0
        while not self.stop_event.is_set():
            due = t0 + k / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.pool.submit(self._one, k)
            k += 1


def machine_sample() -> tuple:
    """(CPU jiffies, 1-minute load average) of the machine: the benchmark shares it, so
    how busy it was is part of the result."""
    return machine_cpu(), loadavg()


def wal_sample() -> tuple[float, int]:
    """(WAL bytes written so far, checkpoints so far) of the server."""
    with connect(DB) as conn:
        return conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0'), "
            "checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
        ).fetchone()


def machine_between(a, b) -> dict:
    busy, total, iowait = (y - x for x, y in zip(a[0], b[0], strict=True))
    return {
        "cpu_busy_percent": round(100 * busy / total, 1) if total else None,
        "iowait_percent": round(100 * iowait / total, 1) if total else None,
        "load_avg_1m_at_end": b[1],
    }


def summarize(samples, start: float, end: float) -> dict:
    window = [s for s in samples if start <= s[0] < end]
    ms = [s[1] * 1000 for s in window]
    out = {
        "requests": len(window),
        "errors": sum(1 for s in window if s[2] != "200"),
        "error_kinds": dict(Counter(s[2] for s in window if s[2] != "200")),
        "req_per_s": round(len(window) / (end - start), 1) if end > start else 0,
        "p50_ms": round(pct(ms, 50), 1),
        "p90_ms": round(pct(ms, 90), 1),
        "p99_ms": round(pct(ms, 99), 1),
        "max_ms": round(max(ms), 1) if ms else float("nan"),
    }
    for kind in ("list", "detail"):
        kind_ms = [s[1] * 1000 for s in window if s[3] == kind]
        out[kind] = {"p50_ms": round(pct(kind_ms, 50), 1), "p99_ms": round(pct(kind_ms, 99), 1)}
    return out


class LockWatch:
    """Samples pg_stat_activity every 50 ms: the age of the purge's open transaction (how
    long it holds its row locks), and API sessions waiting on a lock, on the purge's or
    on another's (API requests wait on each other now and then: the token's
    last_used_at)."""

    def __init__(self):
        self.longest_xact_ms = 0.0
        self.blocked_by_purge = 0
        self.lock_waits = 0
        self.samples = 0
        # What active sessions were doing when sampled ("CPU" when not waiting).
        self.api_waits: Counter = Counter()
        self.purge_waits: Counter = Counter()
        self.checkpoints_at: list[float] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.started = time.monotonic()
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join()

    def _run(self) -> None:
        with connect(DB) as conn:
            checkpoints = None
            while not self.stop_event.wait(0.05):
                for app, event in conn.execute(
                    "SELECT application_name, coalesce(wait_event_type || ':' || wait_event, "
                    "'CPU') FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
                    "AND pid <> pg_backend_pid()",
                    [DB],
                ):
                    (self.purge_waits if app == PURGE_APP_NAME else self.api_waits)[event] += 1
                (done,) = conn.execute(
                    "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
                ).fetchone()
                if checkpoints is not None and done > checkpoints:
                    self.checkpoints_at.append(round(time.monotonic() - self.started, 1))
                checkpoints = done
                row = conn.execute(
                    "WITH a AS (SELECT * FROM pg_stat_activity WHERE datname = %(db)s "
                    "AND pid <> pg_backend_pid()), "
                    "purge AS (SELECT pid, xact_start FROM a WHERE application_name = %(app)s) "
                    "SELECT coalesce((SELECT max(extract(epoch FROM clock_timestamp() - "
                    "xact_start)) FROM purge), 0), "
                    "count(*) FILTER (WHERE wait_event_type = 'Lock'), "
                    "count(*) FILTER (WHERE wait_event_type = 'Lock' AND "
                    "pg_blocking_pids(pid) && ARRAY(SELECT pid FROM purge)) "
                    "FROM a WHERE application_name <> %(app)s",
                    {"db": DB, "app": PURGE_APP_NAME},
                ).fetchone()
                self.samples += 1
                self.longest_xact_ms = max(self.longest_xact_ms, float(row[0]) * 1000)
                self.lock_waits += row[1]
                self.blocked_by_purge += row[2]


# -- verification ----------------------------------------------------------------------------


def verify(seeded: dict, now: datetime) -> dict:
    cutoff = now - timedelta(days=RETENTION_DAYS)
    with connect(DB) as conn:

        def one(sql, *args):
            return conn.execute(sql, args).fetchone()[0]

        old_finished = one(
            "SELECT count(*) FROM workermanager_execution WHERE created_at < %s "
            "AND status NOT IN ('queued', 'running')",
            cutoff,
        )
        old_active = one(
            "SELECT count(*) FROM workermanager_execution WHERE created_at < %s "
            "AND status IN ('queued', 'running')",
            cutoff,
        )
        recent = one("SELECT count(*) FROM workermanager_execution WHERE created_at >= %s", cutoff)
        recent_listed = one(
            "SELECT count(*) FROM workermanager_execution WHERE id = ANY(%s::uuid[])",
            seeded["recent_ids"],
        )
        logs = one("SELECT count(*) FROM workermanager_executionlog")
        orphan_logs = one(
            "SELECT count(*) FROM workermanager_executionlog l WHERE NOT EXISTS "
            "(SELECT 1 FROM workermanager_execution e WHERE e.id = l.execution_id)"
        )
        fires = one("SELECT count(*) FROM scheduler_schedulefire")
        fires_pointing = one(
            "SELECT count(*) FROM scheduler_schedulefire WHERE execution_id IS NOT NULL"
        )
        retry_of = one(
            "SELECT retry_of_id FROM workermanager_execution WHERE id = %s::uuid",
            seeded["retrying_id"],
        )
    expected_rows = seeded["active_old"] + seeded["recent"]
    checks = {
        "old finished executions left": (old_finished, 0),
        "old queued/running executions left": (old_active, seeded["active_old"]),
        "recent executions left": (recent, seeded["recent"]),
        "recent executions found by id": (recent_listed, seeded["recent"]),
        "log rows left": (logs, expected_rows * LOG_CHUNKS),
        "log rows without an execution": (orphan_logs, 0),
        "schedule history rows left": (fires, seeded["fires"]),
        "schedule history rows still pointing at an execution": (fires_pointing, 0),
        "retry_of of the recent retry of a purged execution": (retry_of, None),
    }
    return {
        name: {"got": got, "want": want, "ok": got == want} for name, (got, want) in checks.items()
    }


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=20.0, help="API requests per second")
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--seed-only", action="store_true", help="Seed, print the plans and stop (to study them)."
    )
    args = parser.parse_args()

    benchlib.run_in_project_venv()
    say(f"recreating database {DB} and migrating")
    benchlib.recreate_database(DB, migrate=True)
    benchlib.setup_django(DATABASE_URL)
    now = datetime.now(UTC)

    say(f"seeding {args.executions:,} old executions with {LOG_CHUNKS} log chunks each (COPY)")
    seeded = seed(args.executions, now)
    say(
        f"seeded {seeded['rows']:,} rows: COPY {seeded['copy_seconds']} s "
        f"({seeded['copy_rows_per_second']:,} rows/s), {seeded['with_indexes_seconds']} s with "
        f"the indexes, VACUUM ANALYZE {seeded['vacuum_analyze_seconds']} s"
    )
    before = table_stats()
    explained = plans(now)
    seq_scans = seq_scans_on_big_tables(explained)
    for name, plan in explained.items():
        say(f"EXPLAIN {name}:\n{plan}")
    if seq_scans:
        say(f"WARNING: sequential scans in {seq_scans}")
    if args.seed_only:
        return

    token = manage("createtoken", "bench", "--superuser").strip()
    load = None
    watch = LockWatch()
    try:
        _, port = benchlib.start_api("retention-api", DATABASE_URL)
        base = f"http://127.0.0.1:{port}"
        load = Load(base, token, args.rate, seeded["recent_ids"][-500:])
        say(f"API on {base}; {args.rate:g} req/s for {args.baseline_seconds:g} s (baseline)")
        load.start()
        time.sleep(2.0)  # warm-up, not counted
        baseline_start = time.monotonic()
        marks = [machine_sample()]
        time.sleep(args.baseline_seconds)
        say("purging: manage.py purge_executions (default retention, 30 days)")
        watch.start()
        purge_start = time.monotonic()
        marks.append(machine_sample())
        wal_before = wal_sample()
        purge = Proc(
            "retention-purge",
            [VENV_PY, "manage.py", "purge_executions", "--batch-size", args.batch_size, "-v", "2"],
            hodei_env(PGAPPNAME=PURGE_APP_NAME),
        )
        code = purge.popen.wait()
        purge_end = time.monotonic()
        marks.append(machine_sample())
        wal_after = wal_sample()
        watch.stop()
        time.sleep(5.0)
        after_end = time.monotonic()
        marks.append(machine_sample())
        load.stop()
        if code != 0:
            raise RuntimeError(f"purge failed:\n{purge.output()[-3000:]}")
    finally:
        if load is not None and load.thread.is_alive():
            load.stop()
        if watch.thread.is_alive():
            watch.stop()
        benchlib.stop_all()

    purge_seconds = purge_end - purge_start
    purge_output = purge.output().strip().splitlines()
    batches = [(float(m[1]), float(m[2])) for m in map(BATCH_LINE.search, purge_output) if m]
    batch_ms = [ms for _, ms in batches]
    slow_requests = [
        [round(sent - purge_start, 1), round(seconds * 1000), kind]
        for sent, seconds, _, kind in load.samples
        if purge_start <= sent < purge_end and seconds > 0.5
    ]
    checks = verify(seeded, now)
    after = table_stats()
    results = {
        "executions": args.executions,
        "log_rows": args.executions * LOG_CHUNKS,
        "batch_size": args.batch_size,
        "seed": {k: v for k, v in seeded.items() if k not in ("recent_ids", "retrying_id")},
        "purge": {
            "seconds": round(purge_seconds, 1),
            "executions_per_second": round(args.executions / purge_seconds),
            "log_rows_per_second": round(args.executions * LOG_CHUNKS / purge_seconds),
            "summary": purge_output[-1] if purge_output else "",
            "batches": len(batch_ms),
            "batch_p50_ms": round(pct(batch_ms, 50), 1),
            "batch_p99_ms": round(pct(batch_ms, 99), 1),
            "batch_max_ms": round(max(batch_ms, default=float("nan")), 1),
            "slow_batches": [[at, ms] for at, ms in batches if ms > 500],
            "wal_mb": round((wal_after[0] - wal_before[0]) / 2**20),
            "checkpoints": wal_after[1] - wal_before[1],
            "longest_transaction_ms": round(watch.longest_xact_ms, 1),
            "api_lock_waits_seen": watch.lock_waits,
            "api_sessions_blocked_by_purge_seen": watch.blocked_by_purge,
            "api_session_waits": dict(watch.api_waits.most_common(8)),
            "purge_session_waits": dict(watch.purge_waits.most_common(8)),
            "checkpoints_counted_at": watch.checkpoints_at,
            "lock_samples": watch.samples,
        },
        "api": {
            "rate": args.rate,
            "baseline": summarize(load.samples, baseline_start, purge_start),
            "during_purge": summarize(load.samples, purge_start, purge_end),
            "slow_during_purge": slow_requests,
            "after_purge": summarize(load.samples, purge_end, after_end),
        },
        "tables_before": before,
        "tables_after": after,
        "plans": explained,
        "plans_with_seq_scan": seq_scans,
        "checks": checks,
        "machine": {
            "cpus": os.cpu_count(),
            "baseline": machine_between(marks[0], marks[1]),
            "during_purge": machine_between(marks[1], marks[2]),
            "after_purge": machine_between(marks[2], marks[3]),
        },
    }
    results_path = benchlib.save_results("retention", results)

    p = results["purge"]
    print(
        f"\nRetention benchmark: {args.executions:,} old executions, {LOG_CHUNKS} log chunks each"
    )
    print(
        f"purge: {p['seconds']} s, {p['executions_per_second']:,} executions/s, "
        f"{p['log_rows_per_second']:,} log rows/s; {p['batches']} batches of "
        f"{args.batch_size}: p50 {p['batch_p50_ms']} ms, p99 {p['batch_p99_ms']} ms, max "
        f"{p['batch_max_ms']} ms; longest purge transaction seen "
        f"{p['longest_transaction_ms']} ms; API sessions seen blocked by the purge: "
        f"{p['api_sessions_blocked_by_purge_seen']} (on any lock: {p['api_lock_waits_seen']}, "
        f"in {p['lock_samples']} samples)"
    )
    print(
        f"{'API, ' + format(args.rate, 'g') + ' req/s':<22}{'requests':>9}{'errors':>8}"
        f"{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'machine CPU':>13}"
    )
    for label, key in (
        ("baseline", "baseline"),
        ("during purge", "during_purge"),
        ("after purge", "after_purge"),
    ):
        s = results["api"][key]
        busy = results["machine"][key]["cpu_busy_percent"]
        print(
            f"{label:<22}{s['requests']:>9}{s['errors']:>8}{s['p50_ms']:>9}{s['p90_ms']:>9}"
            f"{s['p99_ms']:>9}{s['max_ms']:>9}{busy:>12}%"
        )
    failed = [name for name, c in checks.items() if not c["ok"]]
    for name, c in checks.items():
        print(f"  {'ok ' if c['ok'] else 'BAD'} {name}: {c['got']} (want {c['want']})")
    print(f"raw figures: {results_path.relative_to(ROOT)}")
    if failed or seq_scans:
        sys.exit(1)


if __name__ == "__main__":
    main()
