#!/usr/bin/env python3
"""Scheduling benchmark: fire lag, duplicate and missed slots of 20 schedules fired by two
qcluster processes, Hodei's ticker against plain django-q2 scheduling, on this machine
against local PostgreSQL.

    python3 bench/bench_scheduling.py               # about 7-8 minutes (3-minute windows)
    python3 bench/bench_scheduling.py --quick       # about 2-3 minutes (1-minute windows)
    python3 bench/bench_scheduling.py --minutes 5 --sequential

Three configurations, each in its own database (created from a freshly migrated template
`hodei_bench_sched`: `hodei_bench_sched_hodei_5s`, `..._hodei_1m`, `..._djq_1m`):

- hodei-5s: 20 Hodei schedules `*/5 * * * * *` (schedule_create, overlap "allow", job
  command `true`), 2 x `manage.py qcluster` (django-q2 cluster + Hodei's ticker);
- hodei-1m: the same at `* * * * *`;
- djq-1m: 20 django-q2 CRON schedules `* * * * *` (django-q2 has no seconds) whose task,
  bench/djq_probe.py, records its own lag; 2 x `manage.py qcluster --no-ticker`.

By default hodei-5s runs alone, then hodei-1m and djq-1m run at the same time (separate
databases, same minutes, same machine noise); --sequential runs all three one after
another, --quick runs all three at once. No agent runs: the executions stay queued.

For each configuration, over its measurement window (slots in [start, end), after a
warm-up; the clusters keep running until every slot of the window has fired, plus 3 s, or
at most `tail` seconds after the end, so that late fires still count):
slots expected (scheduler.cron.next_fire_times), fired, duplicates (a second execution,
history row or probe row for one slot), missed (an expected slot with no fire), the
fire lag (Hodei: ScheduleFire.fired_at - slot_at; baseline: probe ran_at - intended)
p50/p99/max, and from the clusters' logs ("created task ... from schedule [...]") the
enqueue lag (slot -> django-q2's scheduler() created the task) and the pickup
(task created -> firing function started). It prints a table and writes the raw figures
to var/bench-results/scheduling-*.json; cluster logs go to var/bench-logs/sched-*.log.

Every qcluster is started in a new session and stopped in a finally block: SIGTERM to its
process group, SIGKILL to the group after 15 s (and to the supervised cluster's own group,
should the supervisor have been killed). See docs/benchmarks.md, section "Scheduling".
"""

from __future__ import annotations

import argparse
import bisect
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import benchlib
from benchlib import ROOT, VENV_PY, Proc, connect, db_url, loadavg, machine_cpu, pct, say

BASE_DB = "hodei_bench_sched"
STOP_GRACE = 15.0
READY_TIMEOUT = 60.0
PROBE_PREFIX = "djq-bench-"


@dataclass(frozen=True)
class Config:
    key: str
    label: str
    engine: str  # "hodei" (schedule_create + ticker) or "djq" (django-q2 CRON rows)
    cron: str
    ticker: bool  # manage.py qcluster, or qcluster --no-ticker
    aligned: bool  # window on minute boundaries (every-minute schedules)
    tail: float  # seconds the clusters keep running after the window closes

    @property
    def db(self) -> str:
        return f"{BASE_DB}_{self.key.replace('-', '_')}"


CONFIGS = {
    c.key: c
    for c in (
        Config(
            "hodei-5s", "Hodei ticker, */5 * * * * *", "hodei", "*/5 * * * * *", True, False, 10
        ),
        Config("hodei-1m", "Hodei ticker, * * * * *", "hodei", "* * * * *", True, True, 10),
        Config("djq-1m", "plain django-q2, * * * * *", "djq", "* * * * *", False, True, 40),
    )
}


def child_env(db: str) -> dict:
    pythonpath = [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    return benchlib.hodei_env(
        db_url(db),
        TZ="UTC",  # log timestamps are parsed as UTC
        # Every 5 s is the point (the service refuses less than 10 s by default).
        HODEI_MIN_SCHEDULE_INTERVAL_SECONDS=1,
        PYTHONPATH=os.pathsep.join(pythonpath),  # bench.djq_probe for the cluster
    )


# -- processes -----------------------------------------------------------------------------


def proc_table() -> list[tuple[int, int, int]]:
    """(pid, ppid, pgrp) of every process visible in /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out.append((int(entry), int(fields[1]), int(fields[2])))
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def group_members(pgid: int) -> list[int]:
    return [pid for pid, _, pgrp in proc_table() if pgrp == pgid]


class Cluster(Proc):
    """One `manage.py qcluster [--no-ticker]`, in a session of its own."""

    def __init__(self, config: Config, index: int):
        self.config = config
        args = [VENV_PY, "manage.py", "qcluster"] + ([] if config.ticker else ["--no-ticker"])
        super().__init__(
            f"sched-{config.key}-{index}", args, child_env(config.db), new_session=True
        )
        # Process groups of the supervised cluster (Hodei's qcluster starts the plain
        # cluster in a session of its own), noted once it runs.
        self.child_groups: set[int] = set()
        self.stop_seconds: float | None = None
        self.killed = False
        self.exited_early: int | None = None

    def is_ready(self) -> bool:
        text = self.output()
        return "Q Cluster" in text and "running." in text

    def note_children(self) -> None:
        table = proc_table()
        self.child_groups |= {
            pgrp for pid, ppid, pgrp in table if ppid == self.pid and pgrp != self.pid
        }

    def tail_text(self, n: int = 3000) -> str:
        return self.output()[-n:]


def wait_ready(clusters: list[Cluster]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    pending = list(clusters)
    while pending:
        for c in list(pending):
            if c.popen.poll() is not None:
                raise RuntimeError(f"{c.name} exited ({c.popen.returncode}):\n{c.tail_text()}")
            if c.is_ready():
                pending.remove(c)
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"{pending[0].name} not ready:\n{pending[0].tail_text()}")
        time.sleep(0.1)
    for c in clusters:
        c.note_children()


def stop_clusters(clusters: list[Cluster]) -> None:
    """SIGTERM each process group, SIGKILL the group after STOP_GRACE; then SIGKILL what is
    left of a supervised cluster's own group (only if its supervisor was killed)."""
    clusters = [c for c in clusters if c in benchlib.PROCS]
    started = time.monotonic()
    for c in clusters:
        if c.popen.poll() is None:
            c.note_children()
        c.signal(signal.SIGTERM)
    for c in clusters:
        remaining = max(0.0, started + STOP_GRACE - time.monotonic())
        try:
            c.popen.wait(remaining)
        except subprocess.TimeoutExpired:
            say(f"{c.name} still running {STOP_GRACE:.0f} s after SIGTERM: SIGKILL its group")
            c.killed = True
            c.signal(signal.SIGKILL)
            c.popen.wait()
        c.stop_seconds = time.monotonic() - started
    for c in clusters:
        for pgid in c.child_groups:
            members = [p for p in group_members(pgid) if "qcluster" in cmdline(p)]
            if members:
                say(f"{c.name}: cluster group {pgid} outlived its supervisor: SIGKILL")
                c.killed = True
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        c.stop()  # it has exited: closes its log


# -- databases -----------------------------------------------------------------------------


def setup_databases(configs: list[Config]) -> None:
    """The base database, migrated, and one copy of it per configuration."""
    benchlib.recreate_database(BASE_DB, migrate=True)
    for c in configs:
        benchlib.recreate_database(c.db, template=BASE_DB)


def populate(config: Config, count: int) -> None:
    """Create the schedules, in a child process running Django on the config's database."""
    out = subprocess.run(
        [str(VENV_PY), __file__, "--populate", config.key, "--schedules", str(count)],
        cwd=ROOT,
        env=child_env(config.db),
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(f"creating schedules for {config.key} failed:\n{out.stderr[-3000:]}")


def populate_main(key: str, count: int) -> None:
    """Hidden mode (run by populate()): create `count` schedules of configuration `key`."""
    benchlib.setup_django()
    config = CONFIGS[key]
    if config.engine == "hodei":
        from orchestrator.services import job_create, pipeline_create
        from scheduler.services import schedule_create

        pipeline = pipeline_create(name="bench-scheduling")
        for i in range(count):
            # One job per schedule, as 20 independent scheduled jobs would be.
            job = job_create(pipeline=pipeline, name=f"bench-{i:02d}", command="true")
            schedule_create(
                job=job, cron=config.cron, name=f"bench-{i:02d}", overlap_policy="allow"
            )
    else:
        from django.db import connection
        from django_q.models import Schedule

        from bench.djq_probe import CREATE_TABLE

        with connection.cursor() as cursor:
            cursor.execute(CREATE_TABLE)
        for i in range(count):
            name = f"{PROBE_PREFIX}{i:02d}"
            # CRON: django-q2 computes next_run (the next minute) on creation.
            Schedule.objects.create(
                name=name,
                func="bench.djq_probe.record",
                args=repr(name),
                schedule_type=Schedule.CRON,
                cron=config.cron,
                repeats=-1,
                intended_date_kwarg="intended",
            )


# -- machine load --------------------------------------------------------------------------


def own_cpu(config: Config, clusters: list[Cluster]) -> float:
    """CPU seconds used so far by a configuration's qcluster processes (every process of
    their groups) and by the PostgreSQL backends serving its database."""
    groups = {c.pid for c in clusters} | {g for c in clusters for g in c.child_groups}
    total = sum(
        (benchlib.proc_cpu(pid) or (0.0, 0.0))[0] for pid, _, pgrp in proc_table() if pgrp in groups
    )
    with connect() as conn:
        return total + sum(benchlib.backend_cpus(conn, config.db).values())


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None, "min": None}
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "p99": pct(values, 99),
        "max": max(values),
        "min": min(values),
    }


def ms(delta: timedelta) -> float:
    return delta.total_seconds() * 1000.0


# -- analysis ------------------------------------------------------------------------------

LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*created task (\S+) from schedule \[([^\]]+)\]",
    re.M,
)


def created_tasks(clusters: list[Cluster]) -> dict[str, list[datetime]]:
    """schedule name -> times django-q2's scheduler() logged "created task" for it."""
    out: dict[str, list[datetime]] = defaultdict(list)
    for c in clusters:
        for m in LOG_LINE.finditer(c.output()):
            at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
            out[m.group(3)].append(at)
    return out


def slot_of(grid: list[datetime], at: datetime) -> datetime | None:
    """The latest slot of the grid at or before `at`."""
    i = bisect.bisect_right(grid, at)
    return grid[i - 1] if i else None


def analyze(config: Config, clusters: list[Cluster], ws: datetime, we: datetime, t0: datetime):
    from scheduler.cron import next_fire_times

    # At most one slot a second: enough slots to cover the window, and the whole run.
    start = ws - timedelta(microseconds=1)
    span = int((we - start).total_seconds()) + 2
    expected = [s for s in next_fire_times(config.cron, "UTC", after=start, count=span) if s < we]
    expected_set = set(expected)
    before = t0 - timedelta(minutes=2)
    grid = next_fire_times(
        config.cron, "UTC", after=before, count=int((we - before).total_seconds()) + 120
    )

    fired: dict[str, Counter] = defaultdict(Counter)  # name -> slot -> firing rows
    lags: list[float] = []  # one per fired slot in the window
    exec_lags: list[float] = []
    fire_at: dict[tuple[str, datetime], datetime] = {}
    outcomes: Counter = Counter()
    history_dupes = exec_dupes = 0
    with connect(config.db) as conn:
        if config.engine == "hodei":
            names = {
                sid: f"hodei:{sid}"
                for (sid,) in conn.execute("SELECT id::text FROM scheduler_schedule")
            }
            rows = conn.execute(
                "SELECT schedule_id::text, slot_at, fired_at, outcome FROM scheduler_schedulefire"
            ).fetchall()
            per_slot = Counter((r[0], r[1]) for r in rows)
            history_dupes = sum(
                n - 1 for (sid, slot), n in per_slot.items() if n > 1 and slot in expected_set
            )
            for sid, slot, fired_at, outcome in rows:
                if not ws <= slot < we:
                    continue
                outcomes[outcome] += 1
                if outcome in ("fired", "replaced"):
                    fired[names[sid]][slot] += 1
                    lags.append(ms(fired_at - slot))
                    fire_at[(names[sid], slot)] = fired_at
            execs = conn.execute(
                "SELECT schedule_id::text, scheduled_for, created_at FROM workermanager_execution "
                "WHERE schedule_id IS NOT NULL AND scheduled_for IS NOT NULL"
            ).fetchall()
            per_exec_slot = Counter((r[0], r[1]) for r in execs)
            exec_dupes = sum(
                n - 1 for (sid, slot), n in per_exec_slot.items() if n > 1 and ws <= slot < we
            )
            for sid, slot, created_at in execs:
                if ws <= slot < we:
                    exec_lags.append(ms(created_at - slot))
                    if slot not in fired[names[sid]]:  # an execution without its history row
                        fired[names[sid]][slot] += 1
            schedule_names = sorted(names.values())
        else:
            schedule_names = [
                name
                for (name,) in conn.execute(
                    "SELECT name FROM django_q_schedule WHERE name LIKE %s ORDER BY name",
                    [PROBE_PREFIX + "%"],
                )
            ]
            rows = conn.execute("SELECT name, intended, ran_at FROM bench_djq_probe").fetchall()
            for name, slot, ran_at in rows:
                if slot is None or not ws <= slot < we:
                    continue
                outcomes["ran"] += 1
                fired[name][slot] += 1
                if (name, slot) in fire_at:
                    continue  # a duplicate: counted below, lag taken from the first
                lags.append(ms(ran_at - slot))
                fire_at[(name, slot)] = ran_at
        # How long the firing function ran in the django-q2 worker (Task.started/stopped;
        # django-q2 keeps the last `save_limit` successful tasks).
        func = (
            "scheduler.tasks.fire_schedule"
            if config.engine == "hodei"
            else "bench.djq_probe.record"
        )
        runs = conn.execute(
            'SELECT "group", started, stopped FROM django_q_task WHERE func = %s',
            [func],
        ).fetchall()
        task_run_ms = [
            ms(stopped - started)
            for group, started, stopped in runs
            if ws <= started < we + timedelta(seconds=config.tail)
        ]
        queued = conn.execute("SELECT count(*) FROM django_q_ormq").fetchone()[0]
        failed = conn.execute("SELECT count(*) FROM django_q_task WHERE NOT success")
        failures = failed.fetchone()[0]

    slots_fired = missed = extra = dupes = 0
    per_schedule_missed = {}
    for name in schedule_names:
        got = fired.get(name, Counter())
        slots_fired += sum(1 for s in expected if got[s] > 0)
        m = sum(1 for s in expected if got[s] == 0)
        missed += m
        if m:
            per_schedule_missed[name] = [s.isoformat() for s in expected if got[s] == 0]
        extra += sum(1 for s in got if s not in expected_set)
        dupes += sum(n - 1 for s, n in got.items() if n > 1)
    if config.engine == "hodei":
        # A second execution for a slot (the unique constraint should make this 0) or a
        # second history row for it (unique too), whichever is larger.
        dupes = max(dupes, exec_dupes, history_dupes)

    # From the logs: when scheduler() created each task, relative to its slot.
    enqueue_lags, pickups = [], []
    redundant_enqueues = 0
    for name, times in created_tasks(clusters).items():
        if name not in schedule_names:
            continue  # maintenance tasks
        per_slot = Counter()
        for at in sorted(times):
            slot = slot_of(grid, at)
            if slot is None or not ws <= slot < we:
                continue
            per_slot[slot] += 1
            if per_slot[slot] > 1:
                continue
            enqueue_lags.append(ms(at - slot))
            if (name, slot) in fire_at:
                pickups.append(ms(fire_at[(name, slot)] - at))
        redundant_enqueues += sum(n - 1 for n in per_slot.values() if n > 1)

    # The first fire of each slot (all schedules share the slots): the floor set by the
    # ticker and the broker poll, before the burst of tasks queues behind the workers.
    first: dict[datetime, float] = {}
    for (_name, slot), at in fire_at.items():
        lag = ms(at - slot)
        first[slot] = min(first.get(slot, lag), lag)

    return {
        "config": config.key,
        "label": config.label,
        "cron": config.cron,
        "database": config.db,
        "schedules": len(schedule_names),
        "clusters": len(clusters),
        "window": [ws.isoformat(), we.isoformat()],
        "slots_expected": len(expected) * len(schedule_names),
        "slots_fired": slots_fired,
        "duplicates": dupes,
        "missed": missed,
        "extra_slots": extra,
        "redundant_enqueues": redundant_enqueues,
        "outcomes": dict(outcomes),
        "missed_slots": per_schedule_missed,
        "lag_ms": summary(lags),
        "execution_lag_ms": summary(exec_lags),
        "enqueue_lag_ms": summary(enqueue_lags),
        "pickup_ms": summary(pickups),
        "first_fire_of_slot_ms": summary(list(first.values())),
        "task_run_ms": summary(task_run_ms),
        "lags_ms": sorted(round(v, 1) for v in lags),
        "left_in_queue": queued,
        "failed_tasks": failures,
        "stop_seconds": [round(c.stop_seconds or 0, 1) for c in clusters],
        "sigkilled": any(c.killed for c in clusters),
        "exited_early": [c.name for c in clusters if c.exited_early is not None],
    }


def fires_in_window(config: Config, ws: datetime, we: datetime) -> int:
    """Slots of the window fired so far, all schedules together (a cheap check)."""
    with connect(config.db) as conn:
        if config.engine == "hodei":
            sql = "SELECT count(*) FROM scheduler_schedulefire WHERE slot_at >= %s AND slot_at < %s"
        else:
            sql = (
                "SELECT count(DISTINCT (name, intended)) FROM bench_djq_probe "
                "WHERE intended >= %s AND intended < %s"
            )
        return conn.execute(sql, [ws, we]).fetchone()[0]


SETTLE = 3.0  # s to keep running once every slot of the window has fired


# -- a phase: configurations started together ----------------------------------------------


def ceil_minute(at: datetime) -> datetime:
    floor = at.replace(second=0, microsecond=0)
    return floor if floor == at else floor + timedelta(minutes=1)


def run_phase(configs: list[Config], args) -> list[dict]:
    say("starting " + ", ".join(f"{args.clusters} x qcluster for {c.key}" for c in configs))
    clusters: dict[str, list[Cluster]] = {}
    results = []
    try:
        t0 = datetime.now(UTC)
        for c in configs:
            clusters[c.key] = [Cluster(c, i + 1) for i in range(args.clusters)]
        wait_ready([cl for group in clusters.values() for cl in group])
        say("clusters ready; creating schedules")
        windows = {}
        cpu0: dict[str, tuple[float, float]] = {}
        created = {}
        for c in configs:
            populate(c, args.schedules)
            created[c.key] = datetime.now(UTC)
        # Every-minute configurations of a phase share one window (the like-for-like pair
        # sees the same minutes), starting on the first minute boundary after all exist.
        aligned_ws = ceil_minute(max(created.values()) + timedelta(seconds=args.lead))
        for c in configs:
            if c.aligned:
                ws = aligned_ws
                we = ws + timedelta(minutes=max(1, round(args.minutes)))
            else:
                ws = created[c.key] + timedelta(seconds=args.warmup)
                we = ws + timedelta(seconds=args.minutes * 60)
            windows[c.key] = (ws, we)
            cpu0[c.key] = (own_cpu(c, clusters[c.key]), time.monotonic())
            say(f"{c.key}: window {ws:%H:%M:%S} to {we:%H:%M:%S} UTC, tail {c.tail:.0f} s")
        busy0, total0, _ = machine_cpu()
        load0 = loadavg()
        # Each configuration stops `tail` s after its window, or sooner: SETTLE s after
        # every slot of its window has fired (late fires still count until then).
        stop_at = {c.key: windows[c.key][1] + timedelta(seconds=c.tail) for c in configs}
        from scheduler.cron import next_fire_times

        want = {}
        for c in configs:
            ws, we = windows[c.key]
            slots = next_fire_times(c.cron, "UTC", after=ws - timedelta(microseconds=1), count=1)
            period = next_fire_times(c.cron, "UTC", after=slots[0], count=1)[0] - slots[0]
            want[c.key] = round((we - ws) / period) * args.schedules
        next_check = time.monotonic()
        complete: set[str] = set()
        next_note = time.monotonic() + 30
        while True:
            now = datetime.now(UTC)
            for group in clusters.values():
                for cl in group:
                    if cl.exited_early is None and cl.popen.poll() is not None:
                        cl.exited_early = cl.popen.returncode
                        say(f"{cl.name} exited early ({cl.exited_early}):\n{cl.tail_text(1500)}")
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                for c in configs:
                    ws, we = windows[c.key]
                    settled = we + timedelta(seconds=SETTLE)
                    if (
                        c.key in clusters
                        and c.key not in complete
                        and now >= we
                        and fires_in_window(c, ws, we) >= want[c.key]
                    ):
                        complete.add(c.key)
                        stop_at[c.key] = min(
                            stop_at[c.key], max(settled, now + timedelta(seconds=SETTLE))
                        )
            done = [c for c in configs if c.key in clusters and now >= stop_at[c.key]]
            if done:
                # Stop a configuration as soon as its window and tail are over.
                cpu = {}
                for c in done:
                    spent = own_cpu(c, clusters[c.key]) - cpu0[c.key][0]
                    cpu[c.key] = (spent, time.monotonic() - cpu0[c.key][1])
                stop_clusters([cl for c in done for cl in clusters[c.key]])
                busy1, total1, _ = machine_cpu()
                for c in done:
                    ws, we = windows[c.key]
                    result = analyze(c, clusters.pop(c.key), ws, we, t0)
                    result["machine_cpu_busy_pct"] = round(
                        100.0 * (busy1 - busy0) / max(1, total1 - total0), 1
                    )
                    result["loadavg_1m"] = [load0, loadavg()]
                    # Cores this configuration used itself (clusters + its DB backends).
                    result["own_cpu_cores"] = round(cpu[c.key][0] / cpu[c.key][1], 2)
                    result["concurrent_with"] = [o.key for o in configs if o is not c]
                    result["stopped_after_window_s"] = round(
                        (now - windows[c.key][1]).total_seconds(), 1
                    )
                    results.append(result)
                    say(
                        f"{c.key}: {result['slots_fired']}/{result['slots_expected']} fired, "
                        f"{result['duplicates']} duplicates, {result['missed']} missed, "
                        f"lag p50 {fmt(result['lag_ms']['p50'])} p99 {fmt(result['lag_ms']['p99'])}"
                        f" max {fmt(result['lag_ms']['max'])} ms"
                    )
            if not clusters:
                break
            if time.monotonic() >= next_note:
                left = max((stop_at[k] - now).total_seconds() for k in clusters)
                say(f"running; {left:.0f} s left in this phase")
                next_note += 30
            time.sleep(0.5)
    finally:
        stop_clusters([cl for group in clusters.values() for cl in group])
    return results


# -- output --------------------------------------------------------------------------------


def fmt(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def table(results: list[dict]) -> str:
    head = (
        "| configuration | schedules | clusters | slots expected | fired | duplicates | missed "
        "| lag p50 (ms) | lag p99 (ms) | lag max (ms) | enqueue p50 / p99 (ms) "
        "| machine busy / own CPU |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in results:
        lag, enq = r["lag_ms"], r["enqueue_lag_ms"]
        lines.append(
            f"| {r['label']} | {r['schedules']} | {r['clusters']} | {r['slots_expected']} "
            f"| {r['slots_fired']} | {r['duplicates']} | {r['missed']} | {fmt(lag['p50'])} "
            f"| {fmt(lag['p99'])} | {fmt(lag['max'])} | {fmt(enq['p50'])} / {fmt(enq['p99'])} "
            f"| {r['machine_cpu_busy_pct']:.0f} % / {r['own_cpu_cores']:.2f} cores |"
        )
    return "\n".join(lines)


def details(r: dict) -> str:
    def trio(key: str) -> str:
        v = r[key]
        return f"{fmt(v['p50'])}/{fmt(v['p99'])}/{fmt(v['max'])}"

    lines = [
        f"{r['config']}: window {r['window'][0][11:19]}-{r['window'][1][11:19]} UTC, "
        f"alongside: {', '.join(r['concurrent_with']) or '-'}; outcomes {r['outcomes']}",
        f"  ms p50/p99/max: first fire of a slot {trio('first_fire_of_slot_ms')}, "
        f"enqueue {trio('enqueue_lag_ms')}, pickup {trio('pickup_ms')}, "
        f"task run {trio('task_run_ms')}"
        + (f", execution created {trio('execution_lag_ms')}" if r["execution_lag_ms"]["n"] else ""),
        f"  redundant enqueues {r['redundant_enqueues']}, extra slots {r['extra_slots']}, "
        f"failed tasks {r['failed_tasks']}; machine CPU {r['machine_cpu_busy_pct']} % busy "
        f"(this configuration: {r['own_cpu_cores']} cores), "
        f"load {r['loadavg_1m'][0]} -> {r['loadavg_1m'][1]}; stopped in {r['stop_seconds']} s"
        + (" (SIGKILL)" if r["sigkilled"] else ""),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=None, help="window per configuration (3)")
    parser.add_argument("--quick", action="store_true", help="1-minute windows, all at once")
    parser.add_argument("--sequential", action="store_true", help="one configuration at a time")
    parser.add_argument("--schedules", type=int, default=20)
    parser.add_argument("--clusters", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=10.0, help="s before the 5 s window")
    parser.add_argument("--lead", type=float, default=3.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help=f"subset of {','.join(CONFIGS)}"
    )
    parser.add_argument("--populate", help=argparse.SUPPRESS)
    args = parser.parse_args()

    benchlib.run_in_project_venv()
    sys.path.insert(0, str(ROOT))  # scheduler.cron, bench.djq_probe
    if args.populate:
        populate_main(args.populate, args.schedules)
        return 0

    if args.minutes is None:
        args.minutes = 1.0 if args.quick else 3.0
    configs = [CONFIGS[k] for k in args.configs.split(",") if k]
    if args.quick and not args.sequential:
        phases = [configs]
    elif args.sequential:
        phases = [[c] for c in configs]
    else:
        # The headline (every 5 s) alone; the like-for-like every-minute pair together.
        phases = [[c] for c in configs if not c.aligned] + [[c for c in configs if c.aligned]]
    phases = [p for p in phases if p]

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    code = benchlib.code_state()  # what is measured: the tree as it is when the run starts
    results: list[dict] = []
    try:
        setup_databases(configs)
        for phase in phases:
            results += run_phase(phase, args)
    finally:
        stop_clusters([p for p in benchlib.PROCS if isinstance(p, Cluster)])

    order = {c.key: i for i, c in enumerate(configs)}
    results.sort(key=lambda r: order[r["config"]])
    meta = {
        "argv": sys.argv[1:],
        "code": code,
        "minutes": args.minutes,
        "phases": [[c.key for c in p] for p in phases],
        "cpus": os.cpu_count(),
        "runtime_s": round(time.monotonic() - started, 1),
    }
    out = benchlib.save_results("scheduling", {"meta": meta, "results": results})
    print()
    print(table(results))
    print()
    for r in results:
        print(details(r))
    print(f"\nraw figures: {out.relative_to(ROOT)}; total {meta['runtime_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
