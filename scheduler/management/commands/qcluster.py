"""django-q2's ``qcluster``, plus Hodei's ticker for sub-second schedule firing.

Overrides django-q2's command of the same name (the scheduler app is listed before
django_q): the cluster starts exactly as django-q2 starts it, then this process, which
would otherwise only wait for the cluster, runs the ticker until the cluster stops."""

import logging
import os

from django.db import DatabaseError, connection
from django_q.brokers import get_broker
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as DjangoQCommand

from scheduler.ticker import Ticker

log = logging.getLogger("hodei.scheduler")


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
        if options.get("run_once") or options.get("no_ticker"):
            return super().handle(*args, **options)
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        cluster = Cluster()
        cluster.start()
        ticker = Ticker(get_broker())
        try:
            while cluster.sentinel is not None and cluster.sentinel.is_alive():
                try:
                    ticker.step()
                except DatabaseError as exc:
                    log.warning("ticker: database error (%s); retrying", exc)
                    connection.close()
                    ticker._wait(1.0)
        finally:
            ticker.close()
