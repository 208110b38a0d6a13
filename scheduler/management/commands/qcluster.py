"""django-q2's ``qcluster``, plus Hodei's ticker for sub-second schedule firing.

Overrides django-q2's command of the same name (the scheduler app is listed before
django_q). With the ticker (the default) this process supervises a plain django-q2
cluster (``qcluster --no-ticker``) started in a process group of its own, and runs the
ticker itself:

- the cluster never receives signals meant for its supervisor's group: django-q2 hangs
  when SIGTERM reaches its sentinel and workers directly (as process managers such as
  honcho send it), instead of reaching the cluster's main process only;
- on SIGTERM or Ctrl-C the supervisor stops the ticker, forwards SIGTERM to the
  cluster, and SIGKILLs its whole group if it has not stopped after a grace period
  (django-q2 issue #346).

Beside the ticker, a thread of the supervisor reconciles the worker pools every
HODEI_POOL_RECONCILE_SECONDS (``workermanager.pools``); when the supervisor stops, it
stops the pools' agents that run as processes of this host."""

import logging
import os
import signal
import subprocess
import sys

from django.conf import settings
from django.db import DatabaseError, connection
from django_q.brokers import get_broker
from django_q.management.commands.qcluster import Command as DjangoQCommand

from scheduler.ticker import Ticker
from telemetry.tracing import setup_tracing
from workermanager.pools import PoolReconcileLoop, pools_stop_local

log = logging.getLogger("hodei.scheduler")
STOP_GRACE_SECONDS = 10.0


class Command(DjangoQCommand):
    help = "Starts a django-q2 cluster with Hodei's precise schedule ticker."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--no-ticker",
            action="store_true",
            help="Plain django-q2: schedules are looked at only about every 30 s.",
        )

    def handle(self, *args, **options):
        setup_tracing("qcluster")
        if options.get("run_once") or options.get("no_ticker"):
            return super().handle(*args, **options)
        argv = [sys.executable, str(settings.BASE_DIR / "manage.py"), "qcluster", "--no-ticker"]
        if options.get("cluster_name"):
            argv += ["--name", options["cluster_name"]]
        # Handlers first: a SIGTERM during start-up must stop the cluster, not orphan it.
        stopping = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: stopping.append(signum))
        cluster = subprocess.Popen(argv, start_new_session=True)
        ticker = Ticker(get_broker())
        pools = PoolReconcileLoop()
        pools.start()
        try:
            while not stopping and cluster.poll() is None:
                try:
                    ticker.step()
                except DatabaseError as exc:
                    log.warning("ticker: database error (%s); retrying", exc)
                    connection.close()
                    ticker.wait(1.0)
        finally:
            ticker.close()
            pools.stop()
            self._stop(cluster)
            self._stop_pool_agents()
        if cluster.returncode not in (0, -signal.SIGTERM) and not stopping:
            raise SystemExit(cluster.returncode or 1)

    def _stop_pool_agents(self) -> None:
        try:
            stopped = pools_stop_local()
        except DatabaseError as exc:
            log.warning("could not stop the pools' local agents: %s", exc)
            return
        if stopped:
            log.info("stopped %s pool agent(s) of this host", stopped)

    def _stop(self, cluster: subprocess.Popen) -> None:
        if cluster.poll() is None:
            cluster.send_signal(signal.SIGTERM)
            try:
                cluster.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("qcluster did not stop in %s s; killing it", STOP_GRACE_SECONDS)
        try:
            # Whatever is left of the cluster's group (a hung sentinel or worker).
            os.killpg(cluster.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        cluster.wait()
