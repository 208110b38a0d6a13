"""Gunicorn settings shared by the three API services (see the Procfile)."""

import os
import shutil
from pathlib import Path

_service = os.environ.get("HODEI_SERVICE", "orchestrator")

workers = int(os.environ.get("HODEI_WEB_WORKERS", "2"))
# gthread: each request holds one of a process's threads. The worker manager serves the
# agents' long-polls (a claim waits up to 30 s for work), so it gets more threads, and
# lets at most half of them wait (HODEI_AGENT_LONG_POLLS, hodei/settings.py): the rest
# always serve heartbeats, logs and the API. Threads rather than an async worker: the
# wait is on a condition that the process's one LISTEN connection signals
# (workermanager/announcements.py), which releases the GIL, and the code stays the same
# synchronous Django everywhere. A waiting claim costs a thread; the process, on
# PostgreSQL, one extra connection for all of them.
if _service == "workermanager":
    threads = int(os.environ.get("HODEI_WORKERMANAGER_THREADS", "16"))
else:
    threads = int(os.environ.get("HODEI_WEB_THREADS", "4"))
timeout = 60
graceful_timeout = 5
accesslog = "-" if os.environ.get("HODEI_ACCESS_LOG", "1") == "1" else None
errorlog = "-"
forwarded_allow_ips = os.environ.get("HODEI_FORWARDED_ALLOW_IPS", "127.0.0.1")

# Prometheus multiprocess mode: each gunicorn worker writes its HTTP and database metrics
# to files that /metrics aggregates. Set here, in the master, before workers import
# prometheus_client; one directory per service, wiped when the service starts.
_var = Path(os.environ.get("HODEI_VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_var / "prometheus" / _service))

# Gunicorn's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl): the
# three services (and any other gunicorn of this user) would fight over it. One each.
(_var / "run").mkdir(parents=True, exist_ok=True)
control_socket = str(_var / "run" / f"gunicorn-{_service}.ctl")


# Domain metrics (telemetry.metrics): flushed to the database by a thread of each worker
# this often, instead of in a transaction of their own after each request that records
# one; what is left when a worker stops, it flushes on its way out.
_metrics_flush_seconds = float(os.environ.get("HODEI_METRICS_FLUSH_SECONDS", "1"))


def post_worker_init(worker):
    if _metrics_flush_seconds > 0:
        from telemetry import metrics

        metrics.buffer.flush_every(_metrics_flush_seconds)


def worker_exit(server, worker):
    from telemetry import metrics

    try:
        metrics.buffer.flush()
    except Exception as exc:  # the database may be what is going away
        server.log.warning("metrics not flushed on exit: %s", exc)


def on_starting(server):
    path = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    # Managed workers run in sessions of their own so a crashing web worker cannot take
    # them down; when the service itself stops, it stops the agents it started here.
    if os.environ.get("HODEI_SERVICE") != "workermanager":
        return
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hodei.settings")

    django.setup()
    from workermanager.managed import managed_workers_stop_local

    managed_workers_stop_local()
