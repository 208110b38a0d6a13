"""Hodei's domain metrics.

Two kinds, both exposed by every service's /metrics:

- **Cumulative series** (counters, histograms) are recorded by whichever process sees the
  event (an agent settling an execution, qcluster firing a schedule, an API process
  cancelling one), buffered in that process, and added to shared rows in PostgreSQL
  (``telemetry.MetricValue``) with one upsert: on commit for task processes, once a
  second (HODEI_METRICS_FLUSH_SECONDS) from a thread of each web server process (not a
  transaction per request: an HTTP agent's claim and its report each had one), and
  with every heartbeat for agents (so agents push their metrics through the heartbeat;
  they serve no HTTP themselves). A process that is killed loses what it had not
  flushed yet (at most that second); one that stops flushes first. Values only grow,
  across restarts and whatever retention deletes, so Prometheus can ``rate()`` them.
- **State gauges** (queue depth, oldest queued age, workers by status) are computed with
  one indexed query each when /metrics is scraped.
"""

import logging
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from django.db import close_old_connections, connection, transaction

log = logging.getLogger(__name__)

# name -> (type, help, label names, buckets for histograms)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 30, 60)


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # counter | histogram
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


METRICS = {
    m.name: m
    for m in (
        Metric(
            "hodei_executions_finished_total",
            "counter",
            "Executions that reached a final status.",
            ("status", "type"),
        ),
        Metric(
            "hodei_execution_duration_seconds",
            "histogram",
            "Run time of finished executions (started to finished).",
            ("status", "type"),
            DURATION_BUCKETS,
        ),
        Metric(
            "hodei_execution_queue_wait_seconds",
            "histogram",
            "Time from queued (or due, for a delayed retry) to claimed by a worker.",
            ("worker_type",),
            WAIT_BUCKETS,
        ),
        Metric(
            "hodei_schedule_fire_lag_seconds",
            "histogram",
            "Time from a schedule slot to its firing.",
            (),
            LAG_BUCKETS,
        ),
        Metric(
            "hodei_schedule_slots_skipped_total",
            "counter",
            "Schedule slots not run because of the overlap policy.",
            ("reason",),
        ),
        Metric(
            "hodei_schedule_slots_missed_total",
            "counter",
            "Schedule slots missed while no scheduler ran (misfire policy skip), "
            "or covered by a catch-up run (run_once).",
            ("policy",),
        ),
        Metric(
            "hodei_pipeline_runs_finished_total",
            "counter",
            "Pipeline runs that ended, by how.",
            ("status",),
        ),
        Metric(
            "hodei_pipeline_run_duration_seconds",
            "histogram",
            "Run time of finished pipeline runs (first job started to the end).",
            ("status",),
            DURATION_BUCKETS,
        ),
        Metric(
            "hodei_log_bytes_stored_total",
            "counter",
            "Bytes of command output stored.",
            (),
        ),
    )
}


def _label_key(metric: Metric, labels: dict) -> str:
    return ",".join(f"{name}={labels.get(name, '')}" for name in metric.labels)


class Buffer:
    """Per-process increments waiting to be added to the shared rows."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], float] = defaultdict(float)
        self.batched = False  # agents flush with their heartbeat instead of on commit
        self.every: float | None = None  # web servers: a thread flushes this often
        self._flusher_pid: int | None = None

    def add(self, name: str, key: str, amount: float) -> None:
        with self._lock:
            self._pending[(name, key)] += amount

    def take(self) -> dict:
        with self._lock:
            pending, self._pending = self._pending, defaultdict(float)
        return pending

    def flush(self) -> int:
        pending = self.take()
        if not pending:
            return 0
        try:
            _upsert(pending)
        except Exception:
            # Keep the increments for the next flush rather than lose them.
            with self._lock:
                for key, amount in pending.items():
                    self._pending[key] += amount
            raise
        return len(pending)

    def flush_every(self, seconds: float) -> None:
        """From now on, flush from a thread of this process every ``seconds`` rather
        than after each commit (gunicorn_conf.post_worker_init; its worker_exit flushes
        what is left)."""
        self.every = seconds

    def ensure_flusher(self) -> None:
        # Started by the first increment, once per process (a fork has no threads).
        if self._flusher_pid == os.getpid():
            return
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()
        threading.Thread(target=self._flush_forever, name="metrics-flusher", daemon=True).start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.every)
            close_old_connections()  # this thread's own; a broken one is replaced
            try:
                self.flush()
            except Exception:
                log.warning("metrics flush failed; kept for the next one", exc_info=True)


buffer = Buffer()


def _upsert(pending: dict) -> None:
    # Sorted: concurrent flushers lock rows in the same order and never deadlock.
    rows = sorted(pending.items())
    placeholders = ", ".join(["(%s, %s, %s)"] * len(rows))
    params = [value for (name, key), amount in rows for value in (name, key, amount)]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO telemetry_metricvalue (name, labels, value) VALUES "
            + placeholders
            + " ON CONFLICT (name, labels) DO UPDATE"
            " SET value = telemetry_metricvalue.value + excluded.value",
            params,
        )


def _schedule_flush() -> None:
    if buffer.batched:
        return
    if buffer.every:
        buffer.ensure_flusher()
        return
    if connection.in_atomic_block:
        transaction.on_commit(buffer.flush)
    else:
        buffer.flush()


def inc(name: str, amount: float = 1, **labels) -> None:
    metric = METRICS[name]
    buffer.add(name, _label_key(metric, labels), amount)
    _schedule_flush()


def observe(name: str, value: float, **labels) -> None:
    metric = METRICS[name]
    key = _label_key(metric, labels)
    for bound in metric.buckets:
        if value <= bound:
            buffer.add(f"{name}_bucket", f"{key},le={bound}" if key else f"le={bound}", 1)
    buffer.add(f"{name}_bucket", f"{key},le=+Inf" if key else "le=+Inf", 1)
    buffer.add(f"{name}_sum", key, value)
    buffer.add(f"{name}_count", key, 1)
    _schedule_flush()


# -- recording helpers used by the single write paths ---------------------------------


def execution_finished(execution) -> None:
    inc("hodei_executions_finished_total", status=execution.status, type=execution.type)
    if execution.started_at and execution.finished_at:
        observe(
            "hodei_execution_duration_seconds",
            (execution.finished_at - execution.started_at).total_seconds(),
            status=execution.status,
            type=execution.type,
        )


def execution_claimed(execution) -> None:
    due = max(execution.created_at, execution.available_at)
    observe(
        "hodei_execution_queue_wait_seconds",
        max(0.0, (execution.started_at - due).total_seconds()),
        worker_type=execution.worker_type,
    )
