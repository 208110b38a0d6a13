#!/usr/bin/env python3
"""Execution benchmark: drain throughput (against procrastinate), dispatch latency through
the HTTP API, and log throughput, on this machine against local PostgreSQL.

    python3 bench/bench_execution.py            # full run: ~6 min on 2 idle cores, 9-10 under load
    python3 bench/bench_execution.py --quick    # smaller sizes: 1-2 minutes

It re-executes itself under the project's .venv (run `make install` first), creates a
separate virtualenv var/bench-venv with procrastinate for the comparison (procrastinate is
never installed into .venv nor listed in pyproject.toml), drops and recreates the
databases `hodei_bench` and `hodei_bench_procrastinate`, migrates, runs each part with
real processes (agents, gunicorn, procrastinate workers), prints a table, and writes the
raw figures to var/bench-results/. See docs/benchmarks.md, section "Execution".

Every process it starts is stopped in a finally block (SIGTERM, then SIGKILL).
"""

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import benchlib
from benchlib import (
    ROOT,
    VENV_PY,
    Proc,
    Seeder,
    backend_cpus,
    connect,
    machine_cpu,
    median,
    pct,
    say,
    stop_all,
    tree_cpu,
)

BENCH_VENV = ROOT / "var" / "bench-venv"
BENCH_PY = BENCH_VENV / "bin" / "python"
PROCRASTINATE_SCRIPT = ROOT / "bench" / "bench_procrastinate.py"
FLOOR_SCRIPT = ROOT / "bench" / "bench_floor.py"

DB = "hodei_bench"
PDB = "hodei_bench_procrastinate"
DATABASE_URL = benchlib.db_url(DB)
PROCRASTINATE_DSN = benchlib.db_url(PDB)

MIB = 1024 * 1024
# Enough client threads that slow responses never hold back a send (open loop), up to
# responses CLIENT_THREADS / rate seconds late.
CLIENT_THREADS = 256


def ensure_bench_venv() -> None:
    """A separate virtualenv with procrastinate, for the comparison."""
    probe = [str(BENCH_PY), "-c", "import procrastinate, psycopg"]
    if BENCH_PY.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return
    say(f"creating {BENCH_VENV.relative_to(ROOT)} with procrastinate (benchmark only)")
    subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    pip = [str(BENCH_PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "procrastinate", "psycopg[binary]"], check=True)


def proc_status(pid: int, key: str) -> int | None:
    """A kB field of /proc/<pid>/status (VmHWM, VmRSS), in bytes."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


hodei_env = partial(benchlib.hodei_env, DATABASE_URL)
manage = partial(benchlib.manage, DATABASE_URL)


# How Hodei's agents run in a configuration: transport (database or HTTP) and isolation
# (none: plain processes, like procrastinate's; sandbox: bubblewrap, the default).
# db-cold, http-cold, db-sandbox-cold: without spare shells (agent/spare.py), each
# command starts a fresh bash (in a fresh sandbox).
MODES = {
    "db": {"transport": "db", "isolation": "none"},
    "db-cold": {"transport": "db", "isolation": "none", "env": {"HODEI_SPARE_SHELLS": "0"}},
    "db-sandbox": {"transport": "db", "isolation": "sandbox"},
    "db-sandbox-cold": {
        "transport": "db",
        "isolation": "sandbox",
        "env": {"HODEI_SPARE_SHELLS": "0"},
    },
    "http": {"transport": "http", "isolation": "none"},
    "http-cold": {"transport": "http", "isolation": "none", "env": {"HODEI_SPARE_SHELLS": "0"}},
}
# What every runner executes for one job: Hodei's type-bash `true` is `bash -c true`, so
# procrastinate's workers run the same program (like for like).
PROGRAM = ["bash", "-c", "true"]


class Server:
    """The worker manager under gunicorn, for HTTP agents (and the latency part), with a
    registration token its agents register with."""

    def __init__(self, name: str = "gunicorn-workermanager"):
        self.name = name
        self.proc: Proc | None = None
        self.port = 0
        self.registration_token = ""

    def start(self) -> "Server":
        if self.proc is None:
            self.proc, self.port = benchlib.start_api(self.name, DATABASE_URL)
            self.registration_token = (
                manage("createregistrationtoken", "--type", "default").strip().splitlines()[-1]
            )
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid) if self.proc else 0.0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


def start_agent(
    name: str, concurrency: int, mode: str = "db", server: Server | None = None, **extra_env
) -> Proc:
    isolation = MODES[mode]["isolation"]
    extra_env = {**MODES[mode].get("env", {}), **extra_env}
    args = [VENV_PY, "manage.py", "runworker", "--type", "default", "--name", name]
    args += ["--concurrency", concurrency, "--isolation", isolation]
    if MODES[mode]["transport"] == "http":
        args += ["--server", server.url]
        extra_env["HODEI_REGISTRATION_TOKEN"] = server.registration_token
    return Proc(name, args, hodei_env(**extra_env), marker="registered as worker")


def procrastinate(*args) -> None:
    subprocess.run(
        [str(BENCH_PY), str(PROCRASTINATE_SCRIPT), "--dsn", PROCRASTINATE_DSN, *map(str, args)],
        cwd=ROOT,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
    )


# -- databases -----------------------------------------------------------------------------


def db_counters(conn, dbname: str) -> dict:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT xact_commit + xact_rollback, tup_inserted, tup_updated, tup_deleted "
        "FROM pg_stat_database WHERE datname = %s",
        [dbname],
    ).fetchone()
    return dict(zip(("xacts", "inserted", "updated", "deleted"), row, strict=True))


def hodei_reset() -> None:
    """Empty the execution tables (this database is the benchmark's own)."""
    with connect(DB) as conn:
        conn.execute(
            "TRUNCATE workermanager_executionlog, scheduler_schedulefire, workermanager_execution"
        )
        conn.execute("VACUUM ANALYZE workermanager_execution")
        conn.execute("VACUUM ANALYZE workermanager_executionlog")


def procrastinate_reset() -> None:
    with connect(PDB) as conn:
        conn.execute(
            "TRUNCATE procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs, "
            "procrastinate_workers RESTART IDENTITY CASCADE"
        )
        conn.execute("VACUUM ANALYZE procrastinate_jobs")
        conn.execute("VACUUM ANALYZE procrastinate_events")


# -- part 0: spawn ceiling (no database) ---------------------------------------------------


def spawn_worker_main(n: int, concurrency: int, argv: list[str]) -> None:
    """Hidden mode: spawn ``argv`` n times, ``concurrency`` at a time, pipes read, as
    plainly as Python can (the ceiling for any Python runner on this machine)."""

    def one(_):
        subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, start_new_session=True, check=True
        )

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))


def spawn_ceiling(n: int, concurrency: int, argv: list[str], procs: int = 2) -> float:
    per = n // procs
    t0 = time.monotonic()
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--spawn-worker", str(per), str(concurrency), *argv],
            cwd=ROOT,
        )
        for _ in range(procs)
    ]
    try:
        for child in children:
            if child.wait() != 0:
                raise RuntimeError("spawn worker failed")
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return per * procs / (time.monotonic() - t0)


# -- part 1: drain throughput --------------------------------------------------------------


def wait_until(check, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        polls += 1
        value = check()
        if value is not None:
            return value, polls
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for the benchmark to finish")
        time.sleep(interval)


def drain_hodei(
    n: int, concurrency: int, agents: int, mode: str = "db", server: Server | None = None
) -> dict:
    hodei_reset()
    with Seeder(DB, deferred=()) as seeder:
        for i in range(n):
            seeder.execution(created_us=seeder.now_us + i, status="queued", command="true")
    with connect(DB) as conn:
        before = db_counters(conn, DB)
        mcpu0 = machine_cpu()
        api0 = server.cpu() if server else 0.0
        db0 = backend_cpus(conn, DB)  # the server's sessions live on from earlier runs
        t0 = time.monotonic()
        procs = [
            start_agent(f"bench-{mode}-{i + 1}", concurrency, mode, server) for i in range(agents)
        ]
        try:

            def done():
                left, bad = conn.execute(
                    "SELECT count(*) FILTER (WHERE status IN ('queued', 'running')), "
                    "count(*) FILTER (WHERE status NOT IN ('queued', 'running', 'succeeded')) "
                    "FROM workermanager_execution"
                ).fetchone()
                return bad if left == 0 else None

            bad, polls = wait_until(done, timeout=max(120, n / 20))
            t1 = time.monotonic()
            mcpu1 = machine_cpu()
            api1 = server.cpu() if server else 0.0
            db_cpu = sum(v - db0.get(pid, 0.0) for pid, v in backend_cpus(conn, DB).items())
            cpus = [(p.cpu(), p.cpu_at_ready) for p in procs]
        finally:
            for p in procs:
                p.stop()
        time.sleep(0.3)  # exited backends have flushed their statistics
        after = db_counters(conn, DB)
        first, last = conn.execute(
            "SELECT min(started_at), max(finished_at) FROM workermanager_execution"
        ).fetchone()
    startup = median([p.ready_at - p.started_at for p in procs if p.ready_at])
    figures = _drain_figures(
        n, t0, t1, first, last, bad, startup, cpus, db_cpu, before, after, polls + 2, mcpu0, mcpu1
    )
    # HTTP agents: the worker manager serving them (a DB agent runs that code itself).
    figures["api_cpu_ms"] = 1000 * (api1 - api0) / n
    return figures


def drain_procrastinate(n: int, concurrency: int, workers: int) -> dict:
    procrastinate_reset()
    procrastinate("defer", n)
    with connect(PDB) as conn:
        before = db_counters(conn, PDB)
        mcpu0 = machine_cpu()
        t0 = time.monotonic()
        procs = [
            Proc(
                f"procrastinate-{i + 1}",
                [
                    BENCH_PY,
                    PROCRASTINATE_SCRIPT,
                    "--dsn",
                    PROCRASTINATE_DSN,
                    "worker",
                    "--concurrency",
                    concurrency,
                    "--name",
                    f"bench-{i + 1}",
                    "--program",
                    " ".join(PROGRAM),
                ],
                {**os.environ, "PYTHONUNBUFFERED": "1"},
                marker="bench-procrastinate-worker starting",
            )
            for i in range(workers)
        ]
        try:

            def done():
                left, bad = conn.execute(
                    "SELECT count(*) FILTER (WHERE status IN ('todo', 'doing')), "
                    "count(*) FILTER (WHERE status NOT IN ('todo', 'doing', 'succeeded')) "
                    "FROM procrastinate_jobs"
                ).fetchone()
                return bad if left == 0 else None

            bad, polls = wait_until(done, timeout=max(120, n / 20))
            t1 = time.monotonic()
            mcpu1 = machine_cpu()
            db_cpu = sum(backend_cpus(conn, PDB).values())
            cpus = [(p.cpu(), p.cpu_at_ready) for p in procs]
        finally:
            for p in procs:
                p.stop()
        time.sleep(0.3)
        after = db_counters(conn, PDB)
        first, last = conn.execute(
            "SELECT min(at) FILTER (WHERE type = 'started'), "
            "max(at) FILTER (WHERE type = 'succeeded') FROM procrastinate_events"
        ).fetchone()
    startup = median([p.ready_at - p.started_at for p in procs if p.ready_at])
    return _drain_figures(
        n, t0, t1, first, last, bad, startup, cpus, db_cpu, before, after, polls + 2, mcpu0, mcpu1
    )


def _drain_figures(
    n, t0, t1, first, last, bad, startup, cpus, db_cpu, before, after, own_xacts, mcpu0, mcpu1
) -> dict:
    window = (last - first).total_seconds()
    runner_cpu = command_cpu = 0.0
    for end, ready in cpus:
        if end is None:
            continue
        ready = ready or (0.0, 0.0)
        runner_cpu += end[0] - ready[0]
        command_cpu += end[1] - ready[1]
    busy = (mcpu1[0] - mcpu0[0]) / max(1, mcpu1[1] - mcpu0[1])
    return {
        "n": n,
        "failed": bad,
        "rate_window": n / window,  # first start -> last settle, from the database
        "rate_wall": n / (t1 - t0),  # from spawning the runner processes
        "startup_s": startup,
        "runner_cpu_ms": 1000 * runner_cpu / n,  # the agents' / workers' own CPU
        "command_cpu_ms": 1000 * command_cpu / n,  # their children (the commands)
        "db_cpu_ms": 1000 * db_cpu / n,  # the PostgreSQL backends serving them
        "xacts_per_exec": (after["xacts"] - before["xacts"] - own_xacts) / n,
        "machine_busy": busy,
        "api_cpu_ms": 0.0,  # the worker manager, for HTTP agents (drain_hodei)
    }


# -- part 2: dispatch latency --------------------------------------------------------------


class ApiClient:
    """Thread-safe: one keep-alive connection per thread."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.local = threading.local()

    def _conn(self):
        import http.client

        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        return conn

    def post_execute(self, body: bytes) -> tuple[float, float, int, dict | None]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        for attempt in (1, 2):
            conn = self._conn()
            t_send = time.time()
            try:
                conn.request("POST", "/api/v1/execute", body, headers)
                resp = conn.getresponse()
                data = resp.read()
            except OSError:
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    return t_send, time.time(), 0, None
                continue
            t_resp = time.time()
            return t_send, t_resp, resp.status, (json.loads(data) if data else None)
        raise AssertionError("unreachable")


def open_loop(client: ApiClient, pool, rate: float, seconds: float) -> list[dict]:
    body = json.dumps({"command": "echo $EPOCHREALTIME", "type": "bash"}).encode()
    n = int(rate * seconds)
    results: list[dict | None] = [None] * n

    def send(i: int, intended: float) -> None:
        t_send, t_resp, status, data = client.post_execute(body)
        results[i] = {
            "t_send": t_send,
            "t_resp": t_resp,
            "lag": t_send - intended,
            "status": status,
            "id": data.get("id") if status == 201 and data else None,
        }

    t0_mono, t0_wall = time.monotonic() + 0.05, time.time() + 0.05
    futures = []
    for i in range(n):
        target = t0_mono + i / rate
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        futures.append(pool.submit(send, i, t0_wall + i / rate))
    for future in futures:
        future.result()
    return [r for r in results if r is not None]


def wait_none_left(conn, table: str, pending: str, ids: list) -> None:
    """Until none of the rows ``ids`` of ``table`` has a status in ``pending`` (an SQL
    list)."""

    def none_left():
        left = conn.execute(
            f"SELECT count(*) FROM {table} WHERE id = ANY(%s) AND status IN {pending}", [ids]
        ).fetchone()[0]
        return True if left == 0 else None

    wait_until(none_left, timeout=60)


def ran_at(outputs: list[str]) -> dict[int, float]:
    """Job id -> when its program ran, from the ``ran JOB_ID TIME`` lines runners print
    (bench_procrastinate.py's jobs, bench_floor.py's runner)."""
    ran = {}
    for output in outputs:
        for line in output.splitlines():
            if line.startswith("ran "):
                _, job, value = line.split()
                ran[int(job)] = float(value.replace(",", "."))
    return ran


def summary(values: list[float]) -> dict:
    return {
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "p99": pct(values, 99),
        "max": max(values) if values else float("nan"),
    }


def latency_phase(client, pool, api, agents, rate: float, seconds: float) -> dict:
    def cpu_snapshot():
        own = os.times()
        return {
            "api": tree_cpu(api.pid),
            "agents": sum((p.cpu() or (0.0, 0.0))[0] for p in agents),
            "commands": sum((p.cpu() or (0.0, 0.0))[1] for p in agents),
            "client": own.user + own.system,
            "machine": machine_cpu(),
        }

    cpu0 = cpu_snapshot()
    sent = open_loop(client, pool, rate, seconds)
    ids = [r["id"] for r in sent if r["id"]]
    with connect(DB) as conn:
        wait_none_left(conn, "workermanager_execution", "('queued', 'running')", ids)
        cpu1 = cpu_snapshot()
        rows = conn.execute(
            "SELECT e.id::text, e.status, extract(epoch FROM e.created_at), "
            "extract(epoch FROM e.started_at), l.message "
            "FROM workermanager_execution e LEFT JOIN workermanager_executionlog l "
            "ON l.execution_id = e.id AND l.stream = 'stdout' WHERE e.id = ANY(%s)",
            [ids],
        ).fetchall()
    by_id = {row[0]: row for row in rows}
    lat, api_ms, claim_ms, spawn_ms, resp_ms, lags = [], [], [], [], [], []
    row_ms = []
    failures = sum(1 for r in sent if r["status"] != 201)
    for r in sent:
        lags.append(r["lag"] * 1000)
        if r["status"] == 201:
            resp_ms.append((r["t_resp"] - r["t_send"]) * 1000)
        row = by_id.get(r["id"]) if r["id"] else None
        if row is None or row[1] != "succeeded" or not row[4]:
            failures += r["status"] == 201
            continue
        started = float(row[4].strip().replace(",", "."))
        lat.append((started - r["t_send"]) * 1000)
        api_ms.append((float(row[2]) - r["t_send"]) * 1000)
        claim_ms.append((float(row[3]) - float(row[2])) * 1000)
        spawn_ms.append((started - float(row[3])) * 1000)
        row_ms.append((started - float(row[2])) * 1000)

    n = max(1, len(sent))
    m0, m1 = cpu0.pop("machine"), cpu1.pop("machine")
    cpu_ms = {k: 1000 * (cpu1[k] - cpu0[k]) / n for k in cpu0}
    return {
        "rate": rate,
        "seconds": seconds,
        "count": len(lat),
        "sent": len(sent),
        "failures": failures,
        "latency_ms": summary(lat),
        "api_enqueue_ms": summary(api_ms),  # client send -> row created (clock.now())
        "queue_to_claim_ms": summary(claim_ms),  # created -> started_at (NOTIFY, claim)
        "claim_to_exec_ms": summary(spawn_ms),  # started_at -> the command runs
        "row_to_exec_ms": summary(row_ms),  # created_at -> the command runs
        "post_response_ms": summary(resp_ms),
        "send_lag_ms": summary(lags),  # open-loop integrity: sent late by this much
        "cpu_ms_per_exec": cpu_ms,  # api (gunicorn), agents, commands, client (this script)
        "machine_busy": (m1[0] - m0[0]) / max(1, m1[1] - m0[1]),
    }


def latency(
    phases: list[tuple[float, float]], agents: int, concurrency: int, mode: str, server: Server
) -> list[dict]:
    hodei_reset()
    token = manage("createtoken", "bench", "--superuser").strip().splitlines()[-1]
    server.start()
    api, port = server.proc, server.port
    procs = []
    stack = contextlib.ExitStack()
    try:
        procs = [
            start_agent(f"bench-lat-{mode}-{i + 1}", concurrency, mode, server)
            for i in range(agents)
        ]
        for p in procs:
            p.wait_ready()
        client = ApiClient(port, token)
        pool = ThreadPoolExecutor(CLIENT_THREADS)
        stack.callback(pool.shutdown)
        # Warm-up (threads, connections, code paths), discarded.
        open_loop(client, pool, phases[-1][0], 2.0)
        time.sleep(1.0)
        out = []
        for rate, seconds in phases:
            out.append(latency_phase(client, pool, api, procs, rate, seconds))
            out[-1]["mode"] = mode
            say(
                f"latency ({mode}) at {rate:.0f}/s: p50 {out[-1]['latency_ms']['p50']:.1f} ms, "
                f"p99 {out[-1]['latency_ms']['p99']:.1f} ms"
            )
            time.sleep(1.0)
        return out
    finally:
        stack.close()
        for p in procs:
            p.stop()


def procrastinate_pace(rate: float, seconds: float) -> list[tuple[int, float]]:
    """Defer run_echo jobs open loop: (job id, when it was sent) for each."""
    done = subprocess.run(
        [BENCH_PY, PROCRASTINATE_SCRIPT, "--dsn", PROCRASTINATE_DSN, "pace"]
        + ["--rate", str(rate), "--seconds", str(seconds)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith("sent ")]
    return [(int(job), float(t)) for _, job, t in lines]


def latency_procrastinate(phases: list[tuple[float, float]], workers: int, concurrency: int):
    """The same open-loop phases for procrastinate: jobs deferred at each rate (straight
    into the database: there is no HTTP API in front of it), each running `bash -c 'echo
    $EPOCHREALTIME'` as Hodei's latency executions do. Row created = its 'deferred'
    event (the INSERT's now()), claimed = its 'started' event."""
    procrastinate_reset()
    procs = [
        Proc(
            f"procrastinate-lat-{i + 1}",
            [BENCH_PY, PROCRASTINATE_SCRIPT, "--dsn", PROCRASTINATE_DSN, "worker"]
            + ["--concurrency", concurrency, "--name", f"bench-lat-{i + 1}"],
            {**os.environ, "PYTHONUNBUFFERED": "1"},
            marker="bench-procrastinate-worker starting",
        )
        for i in range(workers)
    ]
    try:
        for p in procs:
            p.wait_ready()
        procrastinate_pace(phases[-1][0], 2.0)  # warm-up, discarded
        time.sleep(1.0)
        out = []
        for rate, seconds in phases:
            out.append(procrastinate_latency_phase(procs, rate, seconds))
            say(
                f"latency (procrastinate) at {rate:.0f}/s: row -> running p50 "
                f"{out[-1]['row_to_exec_ms']['p50']:.1f} ms"
            )
            time.sleep(1.0)
        return out
    finally:
        for p in procs:
            p.stop()


def procrastinate_latency_phase(procs: list, rate: float, seconds: float) -> dict:
    cpu0 = [p.cpu() or (0.0, 0.0) for p in procs]
    sent = procrastinate_pace(rate, seconds)
    ids = [job for job, _ in sent]
    with connect(PDB) as conn:
        wait_none_left(conn, "procrastinate_jobs", "('todo', 'doing')", ids)
        events = conn.execute(
            "SELECT job_id, extract(epoch FROM min(at) FILTER (WHERE type = 'deferred')), "
            "extract(epoch FROM min(at) FILTER (WHERE type = 'started')) "
            "FROM procrastinate_events WHERE job_id = ANY(%s) GROUP BY job_id",
            [ids],
        ).fetchall()
    cpu1 = [p.cpu() or (0.0, 0.0) for p in procs]
    ran = ran_at([p.output() for p in procs])
    times = {job: (float(d), float(st)) for job, d, st in events if d and st}
    lat, enq, claim, spawn, row = [], [], [], [], []
    for job, t_send in sent:
        if job not in ran or job not in times:
            continue
        deferred, started = times[job]
        lat.append((ran[job] - t_send) * 1000)
        enq.append((deferred - t_send) * 1000)
        claim.append((started - deferred) * 1000)
        spawn.append((ran[job] - started) * 1000)
        row.append((ran[job] - deferred) * 1000)
    n = max(1, len(sent))
    used = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(cpu0, cpu1, strict=True)]
    return {
        "mode": "procrastinate",
        "rate": rate,
        "seconds": seconds,
        "count": len(lat),
        "sent": len(sent),
        "failures": len(sent) - len(lat),
        "latency_ms": summary(lat),  # send -> the program runs
        "api_enqueue_ms": summary(enq),  # send -> deferred (no HTTP)
        "queue_to_claim_ms": summary(claim),  # deferred -> started
        "claim_to_exec_ms": summary(spawn),  # started -> the program runs
        "row_to_exec_ms": summary(row),  # deferred -> the program runs
        "cpu_ms_per_exec": {
            "workers": 1000 * sum(u[0] for u in used) / n,
            "commands": 1000 * sum(u[1] for u in used) / n,
        },
    }


def latency_floor(phases: list[tuple[float, float]]) -> list[dict]:
    """The same open-loop phases through bench_floor (the path with nothing but psycopg
    and subprocess): row created -> command running as low as this machine goes."""
    import bench_floor  # needs psycopg: only once running in the project's virtualenv

    bench_floor.reset(DATABASE_URL)
    runner = Proc(
        "floor-runner",
        [VENV_PY, FLOOR_SCRIPT, DATABASE_URL],
        {**os.environ, "PYTHONUNBUFFERED": "1"},
        marker="bench-floor-runner ready",
    )
    try:
        runner.wait_ready()
        bench_floor.pace(DATABASE_URL, phases[-1][0], 2.0)  # warm-up, discarded
        time.sleep(1.0)
        bounds = []
        for rate, seconds in phases:
            first = bench_floor.last_id(DATABASE_URL)
            bench_floor.pace(DATABASE_URL, rate, seconds)
            bounds.append((rate, seconds, first, bench_floor.last_id(DATABASE_URL)))
            time.sleep(1.0)
        # Every row claimed before the runner stops (it prints what ran as it stops).
        wait_until(lambda: True if not bench_floor.unclaimed(DATABASE_URL) else None, timeout=60)
    finally:
        runner.stop()
    found = bench_floor.rows(DATABASE_URL, bounds[0][2])
    ran = ran_at([runner.output()])
    out = []
    for rate, seconds, first, last in bounds:
        claim, spawn, row = [], [], []
        for job, created, started in found:
            if first < job <= last and job in ran and started:
                claim.append((started - created) * 1000)
                spawn.append((ran[job] - started) * 1000)
                row.append((ran[job] - created) * 1000)
        out.append(
            {
                "mode": "floor",
                "rate": rate,
                "seconds": seconds,
                "count": len(row),
                "sent": last - first,
                "failures": last - first - len(row),
                "queue_to_claim_ms": summary(claim),
                "claim_to_exec_ms": summary(spawn),
                "row_to_exec_ms": summary(row),
                "cpu_ms_per_exec": {},
            }
        )
        say(f"latency (floor) at {rate:.0f}/s: row -> running p50 {summary(row)['p50']:.1f} ms")
    return out


# -- part 3: log throughput ----------------------------------------------------------------


def log_command(size: int) -> str:
    # 100-byte lines ("a" * 99 + newline), exactly `size` bytes.
    return f"yes {'a' * 99} | head -c {size}"


def log_baselines(size: int) -> dict:
    cmd = log_command(size)
    t0 = time.monotonic()
    subprocess.run(["bash", "-c", f"{cmd} > /dev/null"], check=True)
    devnull = size / (time.monotonic() - t0) / 1e6

    # A trivial Python reader: the agent's read size (64 KiB), counting bytes.
    t0 = time.monotonic()
    proc = subprocess.Popen(["bash", "-c", cmd], stdout=subprocess.PIPE)
    fd, total = proc.stdout.fileno(), 0
    while chunk := os.read(fd, 64 * 1024):
        total += len(chunk)
    proc.wait()
    reader = total / (time.monotonic() - t0) / 1e6
    return {"devnull_mb_s": devnull, "python_reader_mb_s": reader}


def log_throughput(size: int, flush_bytes: int | None = None) -> dict:
    from workermanager import services
    from workermanager.models import Execution

    hodei_reset()
    env = {"HODEI_LOG_MAX_BYTES": 2 * size + MIB}
    if flush_bytes:
        env["HODEI_LOG_FLUSH_BYTES"] = flush_bytes
    agent = start_agent("bench-log", 1, **env)
    try:
        agent.wait_ready()
        time.sleep(0.5)
        with connect(DB) as conn:
            hwm_idle = proc_status(agent.pid, "VmHWM")
            cpu0 = agent.cpu()
            db0 = backend_cpus(conn, DB)
            before = db_counters(conn, DB)
            execution = services.execution_enqueue(command=log_command(size), type="bash")

            def done():
                status = conn.execute(
                    "SELECT status FROM workermanager_execution WHERE id = %s",
                    [execution.id],
                ).fetchone()[0]
                return status if status not in ("queued", "running") else None

            status, polls = wait_until(done, timeout=600, interval=0.1)
            hwm = proc_status(agent.pid, "VmHWM")
            cpu1 = agent.cpu()
            db1 = backend_cpus(conn, DB)
            agent.stop()
            time.sleep(0.3)  # the agent's backends have exited and flushed their counters
            after = db_counters(conn, DB)
            stored, chunks = conn.execute(
                "SELECT coalesce(sum(octet_length(message)), 0), count(*) "
                "FROM workermanager_executionlog WHERE execution_id = %s AND stream = 'stdout'",
                [execution.pk],
            ).fetchone()
    finally:
        agent.stop()
    execution = Execution.objects.get(pk=execution.pk)
    duration = (execution.finished_at - execution.started_at).total_seconds()
    return {
        "status": status,
        "stored_bytes": int(stored),
        "expected_bytes": size,
        "chunks": chunks,
        "duration_s": duration,
        "mb_s": int(stored) / duration / 1e6,
        "agent_cpu_s": (cpu1[0] - cpu0[0]) if cpu0 and cpu1 else float("nan"),
        "db_cpu_s": sum(v - db0.get(pid, 0.0) for pid, v in db1.items()),
        # the agent's INSERTs (and its heartbeats and polls), less this script's own
        "xacts": after["xacts"] - before["xacts"] - polls - 1,
        "vmhwm_idle_mb": (hwm_idle or 0) / 1e6,
        "vmhwm_mb": (hwm or 0) / 1e6,
    }


# -- the run -------------------------------------------------------------------------------


def fmt(value, spec=".0f") -> str:
    if value is None or value != value:
        return "-"
    return format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about 2 min)")
    parser.add_argument(
        "--parts",
        default="spawn,drain,latency,logs",
        help="comma-separated subset of spawn,drain,latency,logs",
    )
    parser.add_argument(
        "--no-procrastinate", action="store_true", help="skip the procrastinate comparison"
    )
    parser.add_argument("--concurrency", default="4,8", help="per-agent concurrencies")
    parser.add_argument(
        "--modes",
        default="db,http,db-sandbox",
        help="Hodei agent modes, comma-separated: db (database transport, --isolation none), "
        "db-cold, http-cold and db-sandbox-cold (without spare shells), "
        "http (hodei-agent over HTTP, --isolation none), db-sandbox (database, bubblewrap)",
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=None,
        help="repetitions of the drain (default 3, 1 with --quick) and of the latency (default 1)",
    )
    parser.add_argument("--spawn-worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.spawn_worker:
        n, concurrency, *argv = args.spawn_worker
        spawn_worker_main(int(n), int(concurrency), argv)
        return 0

    parts = set(args.parts.split(","))
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown modes {sorted(unknown)}: choose from {sorted(MODES)}")
    server = Server()
    with_procrastinate = bool(parts & {"drain", "latency"}) and not args.no_procrastinate
    benchlib.run_in_project_venv()
    if with_procrastinate:
        ensure_bench_venv()

    quick = args.quick
    n_drain = 1000 if quick else 5000
    reps = args.reps or (1 if quick else 3)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    rate, seconds = 100.0, (10.0 if quick else 30.0)
    log_size = (20 if quick else 100) * MIB
    log_reps = 1 if quick else 3
    agents = 2

    def _term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    results: dict = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": quick,
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
    }
    say(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    t_start = time.monotonic()
    try:
        benchlib.recreate_database(DB, migrate=True)
        if with_procrastinate:
            benchlib.recreate_database(PDB)
        benchlib.setup_django(DATABASE_URL)
        with connect() as conn:
            results["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
        code = benchlib.code_state()
        results["commit"] = code["head"][:7]
        results["dirty_files"] = sum(not line.startswith("??") for line in code["changed"])
        if with_procrastinate:
            procrastinate("schema")
            results["procrastinate"] = subprocess.run(
                [
                    str(BENCH_PY),
                    "-c",
                    "import importlib.metadata as m; print(m.version('procrastinate'))",
                ],
                capture_output=True,
                text=True,
            ).stdout.strip()

        if "spawn" in parts:
            results.setdefault("loadavg", {})["spawn"] = os.getloadavg()[0]
            n_spawn = 1000 if quick else 3000
            rows = {"bash -c true": [], "/bin/true": []}
            for _ in range(reps):
                for label, argv in (
                    ("bash -c true", ["bash", "-c", "true"]),
                    ("/bin/true", ["/bin/true"]),
                ):
                    rows[label].append(spawn_ceiling(n_spawn, max(concurrencies), argv))
            results["spawn"] = {k: {"runs": v, "median": median(v)} for k, v in rows.items()}
            say(
                "spawn ceiling: "
                + ", ".join(f"{k} {v['median']:.0f}/s" for k, v in results["spawn"].items())
            )

        if "drain" in parts:
            results.setdefault("loadavg", {})["drain"] = os.getloadavg()[0]
            runs: dict = {}
            for rep in range(reps):
                for c in concurrencies:
                    for mode in modes:
                        key = f"hodei {mode} c={c}"
                        if MODES[mode]["transport"] == "http":
                            server.start()
                        r = drain_hodei(n_drain, c, agents, mode, server)
                        runs.setdefault(key, []).append(r)
                        say(
                            f"drain {key} rep {rep + 1}: {r['rate_window']:.0f}/s "
                            f"(wall {r['rate_wall']:.0f}/s)"
                        )
                    if with_procrastinate:
                        key = f"procrastinate c={c}"
                        r = drain_procrastinate(n_drain, c, agents)
                        runs.setdefault(key, []).append(r)
                        say(
                            f"drain {key} rep {rep + 1}: {r['rate_window']:.0f}/s "
                            f"(wall {r['rate_wall']:.0f}/s)"
                        )
            results["drain"] = {
                key: {
                    "runs": rs,
                    "median": {k: median([r[k] for r in rs]) for k in rs[0]},
                }
                for key, rs in runs.items()
            }

        if "latency" in parts:
            results.setdefault("loadavg", {})["latency"] = os.getloadavg()[0]
            say(f"dispatch latency: {rate:.0f}/s for {seconds:.0f} s through the API")
            # A light load first (10/s): the floor of the path, without queueing.
            phases = [(10.0, 5.0 if quick else 10.0), (rate, seconds)]
            # Repeated (--reps; once without it: each rep runs every mode, procrastinate
            # and the floor for 15-40 s each), each rep running them in turn: paired runs
            # share the machine's mood.
            results["latency"] = []
            for rep in range(args.reps or 1):
                for mode in modes:
                    phase = latency(phases, agents, concurrencies[0], mode, server)
                    results["latency"] += [{**r, "rep": rep} for r in phase]
                if with_procrastinate:
                    phase = latency_procrastinate(phases, agents, concurrencies[0])
                    results["latency"] += [{**r, "rep": rep} for r in phase]
                results["latency"] += [{**r, "rep": rep} for r in latency_floor(phases)]

        if "logs" in parts:
            results.setdefault("loadavg", {})["logs"] = os.getloadavg()[0]
            base, runs, variant = [], [], []
            for rep in range(log_reps):
                base.append(log_baselines(log_size))
                runs.append(log_throughput(log_size))
                say(
                    f"logs rep {rep + 1}: {runs[-1]['mb_s']:.1f} MB/s stored, "
                    f"VmHWM {runs[-1]['vmhwm_mb']:.0f} MB"
                )
                # Diagnostic, not the figure: the same with 1 MiB chunks (fewer INSERTs).
                variant.append(log_throughput(log_size, flush_bytes=MIB))
                say(f"logs rep {rep + 1}, 1 MiB chunks: {variant[-1]['mb_s']:.1f} MB/s stored")

            def medians(rows):
                return {
                    k: median([r[k] for r in rows])
                    for k in rows[0]
                    if isinstance(rows[0][k], (int, float))
                }

            results["logs"] = {
                "size": log_size,
                "runs": runs,
                "runs_flush_1mib": variant,
                "baselines": base,
                "median": medians(runs),
                "median_flush_1mib": medians(variant),
                "baseline_median": medians(base),
            }
    finally:
        server.stop()
        stop_all()
    results["runtime_s"] = time.monotonic() - t_start
    out = benchlib.save_results("execution", results)
    print_report(results, n_drain, reps, concurrencies, agents, rate, seconds, log_size)
    print(f"\nraw figures: {out.relative_to(ROOT)}; runtime {results['runtime_s']:.0f} s")
    return 0


def cpu_total(m: dict) -> float:
    return m["runner_cpu_ms"] + m["command_cpu_ms"] + m["db_cpu_ms"]


def print_report(results, n_drain, reps, concurrencies, agents, rate, seconds, log_size):
    print()
    print(
        f"Execution benchmark  ({results['cpus']} cores, PostgreSQL "
        f"{results.get('postgres', '?')}, load {results['loadavg_at_start'][0]:.2f} at start"
        f"{', QUICK' if results['quick'] else ''})"
    )
    print(
        f"Hodei commit {results.get('commit', '?')} ({results.get('dirty_files', 0)} modified "
        f"tracked files); procrastinate {results.get('procrastinate', '-')}; 1-min load "
        "average when each part began: "
        + ", ".join(f"{k} {v:.2f}" for k, v in results.get("loadavg", {}).items())
    )
    if "spawn" in results:
        print(
            f"\nSpawn ceiling, no database (2 Python processes x {max(concurrencies)} threads, "
            "subprocess.run with pipes), median:"
        )
        for k, v in results["spawn"].items():
            print(f"  {k:<14} {v['median']:6.0f} /s")
    if "drain" in results:
        print(
            f"\n1. Drain: {n_drain} executions of `true`, {agents} runner processes, "
            f"median of {reps} run(s); every runner runs `{' '.join(PROGRAM)}` per job "
            "(Hodei: type bash; procrastinate: the same argv as an asyncio subprocess). "
            "Modes: db = database agents, http = hodei-agent over HTTP, both --isolation "
            "none; db-sandbox = database agents in bubblewrap"
        )
        head = (
            f"  {'runner':<26}{'exec/s':>8}{'wall/s':>8}{'start s':>8}{'runner':>8}"
            f"{'api':>7}{'cmds':>7}{'db':>7}{'xact/ex':>8}{'busy':>6}  runs exec/s"
        )
        print(head)
        print(f"  {'':<26}{'':>8}{'':>8}{'':>8}{'ms/ex':>8}{'ms/ex':>7}{'ms/ex':>7}{'ms/ex':>7}")
        for key, v in results["drain"].items():
            m = v["median"]
            runs = " ".join(f"{r['rate_window']:.0f}" for r in v["runs"])
            fails = sum(r["failed"] for r in v["runs"])
            print(
                f"  {key:<26}{fmt(m['rate_window']):>8}{fmt(m['rate_wall']):>8}"
                f"{fmt(m['startup_s'], '.2f'):>8}{fmt(m['runner_cpu_ms'], '.2f'):>8}"
                f"{fmt(m.get('api_cpu_ms', 0.0), '.2f'):>7}"
                f"{fmt(m['command_cpu_ms'], '.2f'):>7}{fmt(m['db_cpu_ms'], '.2f'):>7}"
                f"{fmt(m['xacts_per_exec'], '.2f'):>8}{fmt(100 * m['machine_busy']):>5}%"
                f"  {runs}{f'  FAILED {fails}' if fails else ''}"
            )
        cores = results["cpus"]
        print(
            f"  CPU-bound ceiling on {cores} idle cores (cores / (runner + cmds + db) CPU "
            "per execution; less sensitive than rates to other load on the machine):"
        )
        print(
            "    "
            + ", ".join(
                f"{key} {1000 * cores / cpu_total(v['median']):.0f}/s"
                for key, v in results["drain"].items()
            )
        )
        for c in concurrencies:
            p = results["drain"].get(f"procrastinate c={c}")
            db = results["drain"].get(f"hodei db c={c}")
            for mode in MODES:
                h = results["drain"].get(f"hodei {mode} c={c}")
                # Runs alternate (Hodei modes, procrastinate, ...): pairs share the
                # machine's mood.
                for label, base in (("procrastinate", p), ("db", db if mode != "db" else None)):
                    if h and base:
                        pairs = [
                            a["rate_window"] / b["rate_window"]
                            for a, b in zip(h["runs"], base["runs"], strict=False)
                        ]
                        print(
                            f"  c={c}: Hodei {mode} / {label} = {median(pairs):.2f} (median of "
                            f"paired runs: {' '.join(f'{r:.2f}' for r in pairs)})"
                        )
        print(
            "  targets: db / procrastinate >= 1.0 at both concurrencies; runner CPU <= 2.5 "
            "ms/ex; http / db >= 0.8"
        )
    if "latency" in results:
        last = max(lat.get("rep", 0) for lat in results["latency"])
        for lat in results["latency"]:
            if lat.get("rep", 0) != last:
                continue  # the tables show the last rep; the medians follow them
            if lat["mode"] == "floor":
                print(
                    f"\n2. Dispatch latency floor (bench/bench_floor.py: psycopg and subprocess "
                    f"only), open loop: {lat['rate']:.0f}/s for {lat['seconds']:.0f} s, one "
                    f"runner; {lat['count']} of {lat['sent']} measured"
                )
            elif lat["mode"] == "procrastinate":
                print(
                    f"\n2. Dispatch latency (procrastinate), open loop: {lat['rate']:.0f}/s for "
                    f"{lat['seconds']:.0f} s, deferred straight into the database (no HTTP), "
                    f"{agents} workers; {lat['count']} of {lat['sent']} measured"
                )
            else:
                print(
                    f"\n2. Dispatch latency ({lat['mode']} agents), open loop: "
                    f"{lat['rate']:.0f}/s for {lat['seconds']:.0f} s "
                    f"through POST /api/v1/execute, {agents} agents; {lat['count']} of "
                    f"{lat['sent']} measured, {lat['failures']} failed; machine "
                    f"{100 * lat['machine_busy']:.0f}% busy"
                )
            print(f"  {'ms':<42}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}")
            for key, label in (
                ("latency_ms", "send -> command running (THE FIGURE)"),
                ("api_enqueue_ms", "  send -> row created (API)"),
                ("queue_to_claim_ms", "  row created -> claimed (NOTIFY, claim)"),
                ("claim_to_exec_ms", "  claimed -> command running (spawn)"),
                ("row_to_exec_ms", "row created -> command running"),
                ("post_response_ms", "POST response time"),
                ("send_lag_ms", "client send lag (open-loop check)"),
            ):
                if key not in lat:
                    continue
                s = lat[key]
                print(
                    f"  {label:<42}{fmt(s['p50'], '.1f'):>8}{fmt(s['p90'], '.1f'):>8}"
                    f"{fmt(s['p99'], '.1f'):>8}{fmt(s['max'], '.1f'):>8}"
                )
            if lat.get("send_lag_ms", {}).get("p99", 0) > 50:
                print(
                    "  WARNING: the client fell behind its schedule (send lag p99 > 50 ms): "
                    "the machine was overloaded and the open loop broke down"
                )
            cpu = lat["cpu_ms_per_exec"]
            print(
                "  CPU ms per execution: "
                + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
                + f" (total {sum(cpu.values()):.2f})"
            )
        print_latency_medians(results["latency"])
        print(
            "  targets (db, --isolation none): 10/s p50 <= 8 ms, p99 <= 15 ms; claimed -> "
            "running <= 2 ms; row created -> running <= 4 ms; api CPU <= 3 ms per POST; "
            "100/s p50 <= 15 ms, p99 <= 60 ms; http adds <= 3 ms at p50"
        )
    if "logs" in results:
        print_logs(results["logs"], log_size)


def print_latency_medians(phases: list[dict]) -> None:
    """Per rate and runner, the median over the reps of each rep's p50, with each rep's;
    then row created -> running against procrastinate and the floor, paired by rep.
    Server CPU is the worker manager's per execution: the POST, and with HTTP agents
    also their long-polls and finishes."""
    runs: dict = {}  # (rate, mode) -> [phase of each rep]
    for lat in phases:
        runs.setdefault((lat["rate"], lat["mode"]), []).append(lat)
    reps = max(len(v) for v in runs.values())
    print(f"\n  Medians over {reps} rep(s) of each rep's p50 (each rep's in brackets), ms:")
    head = ("send -> running", "row -> running", "server CPU")
    print(f"  {'rate':>6}  {'runner':<14}{head[0]:>26}{head[1]:>26}{head[2]:>24}")
    for (rate, mode), rs in runs.items():
        cells = []
        for key in ("latency_ms", "row_to_exec_ms"):
            values = [r[key]["p50"] for r in rs if key in r]
            cells.append(
                f"{median(values):.1f} ({' '.join(f'{v:.1f}' for v in values)})" if values else "-"
            )
        cpu = [r["cpu_ms_per_exec"]["api"] for r in rs if "api" in r["cpu_ms_per_exec"]]
        cells.append(f"{median(cpu):.2f} ({' '.join(f'{v:.1f}' for v in cpu)})" if cpu else "-")
        print(f"  {rate:>4.0f}/s  {mode:<14}{cells[0]:>26}{cells[1]:>26}{cells[2]:>24}")
    for (rate, mode), rs in runs.items():
        for against in ("procrastinate", "floor"):
            base = runs.get((rate, against))
            if mode in ("procrastinate", "floor") or not base:
                continue
            pairs = [
                a["row_to_exec_ms"]["p50"] / b["row_to_exec_ms"]["p50"]
                for a, b in zip(rs, base, strict=False)
            ]
            print(
                f"  row -> running at {rate:.0f}/s, {mode} / {against} = {median(pairs):.2f} "
                f"(paired reps: {' '.join(f'{p:.2f}' for p in pairs)})"
            )


def print_logs(lg: dict, log_size: int) -> None:
    m, b = lg["median"], lg["baseline_median"]
    print(
        f"\n3. Log throughput: one execution writing {log_size // MIB} MiB to stdout "
        f"(100-byte lines), median of {len(lg['runs'])} run(s)"
    )
    v = lg["median_flush_1mib"]
    for label, row in (("stored (default config)", m), ("  HODEI_LOG_FLUSH_BYTES=1MiB", v)):
        print(
            f"  {label:<29}{row['mb_s']:7.1f} MB/s  ({row['stored_bytes'] / MIB:.1f} MiB in "
            f"{row['chunks']:.0f} chunks, {row['duration_s']:.2f} s, {row['xacts']:.0f} "
            f"transactions; CPU agent {row['agent_cpu_s']:.2f} s, "
            f"PostgreSQL {row['db_cpu_s']:.2f} s; VmHWM {row['vmhwm_mb']:.0f} MB)"
        )
    print(f"  baseline: `cmd > /dev/null`  {b['devnull_mb_s']:7.1f} MB/s")
    print(f"  baseline: Python 64 KiB reader {b['python_reader_mb_s']:5.1f} MB/s")
    print(f"  stored / Python reader = {m['mb_s'] / b['python_reader_mb_s']:.3f}")
    print(
        f"  agent peak RSS (VmHWM, default config) {m['vmhwm_mb']:.0f} MB "
        f"(idle agent before the run: {m['vmhwm_idle_mb']:.0f} MB)"
    )
    print("  target: >= 60 MB/s stored (default config), RSS < 100 MB")


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
