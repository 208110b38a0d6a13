"""The /metrics view's domain part: shared series from the database, and state gauges
computed at scrape time."""

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from hodei.lib import clock
from scheduler.choices import ScheduleHealth
from scheduler.models import Schedule
from telemetry.metrics import METRICS
from telemetry.models import MetricValue
from workermanager import selectors, waiting


def _parse_labels(text: str) -> dict:
    return dict(part.split("=", 1) for part in text.split(",") if part)


class DomainCollector:
    def collect(self):
        yield from self._stored_series()
        yield from self._queue_gauges()
        yield from self._worker_gauges()
        yield from self._schedule_gauges()
        yield from self._blocked_gauges()
        yield from self._pool_gauges()

    def _stored_series(self):
        rows = MetricValue.objects.values_list("name", "labels", "value")
        by_sample: dict[str, list] = {}
        for name, labels, value in rows:
            by_sample.setdefault(name, []).append((_parse_labels(labels), value))
        for metric in METRICS.values():
            if metric.kind == "counter":
                family = Metric(metric.name.removesuffix("_total"), metric.help, "counter")
                for labels, value in by_sample.get(metric.name, []):
                    family.add_sample(metric.name, labels, value)
            else:
                family = self._histogram(metric, by_sample)
            yield family

    def _histogram(self, metric, by_sample) -> Metric:
        """Every bucket of every label set (a bucket never hit is stored as no row)."""
        family = Metric(metric.name, metric.help, "histogram")
        buckets = {}
        for labels, value in by_sample.get(metric.name + "_bucket", []):
            le = float(labels.pop("le"))
            buckets[(tuple(sorted(labels.items())), le)] = value
        sums = {tuple(sorted(lb.items())): v for lb, v in by_sample.get(metric.name + "_sum", [])}
        for labels, count in by_sample.get(metric.name + "_count", []):
            key = tuple(sorted(labels.items()))
            for bound in (*metric.buckets, float("inf")):
                value = buckets.get((key, float(bound)), 0.0)
                family.add_sample(
                    metric.name + "_bucket", {**labels, "le": floatToGoString(bound)}, value
                )
            family.add_sample(metric.name + "_count", labels, count)
            family.add_sample(metric.name + "_sum", labels, sums.get(key, 0.0))
        return family

    def _queue_gauges(self):
        now = clock.now()
        depth = GaugeMetricFamily(
            "hodei_queue_depth", "Queued executions, per worker type.", labels=["worker_type"]
        )
        age = GaugeMetricFamily(
            "hodei_queue_oldest_age_seconds",
            "Age of the oldest queued execution, per worker type.",
            labels=["worker_type"],
        )
        known = selectors.known_worker_types(limit=settings.HODEI_METRICS_MAX_WORKER_TYPES)
        queue = selectors.queue_by_worker_type()
        depths = selectors.bounded({q.worker_type: q.queued for q in queue}, known)
        ages: dict[str, float] = {}
        for q in queue:
            key = q.worker_type if q.worker_type in known else selectors.OTHER
            ages[key] = max(ages.get(key, 0.0), (now - q.oldest_created_at).total_seconds())
        for worker_type, n in depths.items():
            depth.add_metric([worker_type], n)
            age.add_metric([worker_type], max(0.0, ages[worker_type]))
        running = GaugeMetricFamily(
            "hodei_executions_running",
            "Running executions, per worker type.",
            labels=["worker_type"],
        )
        for worker_type, n in selectors.bounded(selectors.running_by_worker_type(), known).items():
            running.add_metric([worker_type], n)
        yield depth
        yield age
        yield running

    def _worker_gauges(self):
        now = clock.now()
        counts = selectors.workers_by_liveness(now=now)
        family = GaugeMetricFamily(
            "hodei_workers",
            "Registered workers by status (stale: online but its heartbeat is late).",
            labels=["status"],
        )
        for status, n in counts.items():
            family.add_metric([status], n)
        yield family
        unsandboxed = GaugeMetricFamily(
            "hodei_workers_unsandboxed",
            "Live workers running commands without a sandbox (isolation none).",
        )
        unsandboxed.add_metric([], len(selectors.unsandboxed_workers()))
        yield unsandboxed

    def _schedule_gauges(self):
        """Dead-man alerting: 1 for each alerting schedule that is down, 0 for the others
        (as many series as schedules with alert_after_seconds, within HODEI_MAX_SCHEDULES)."""
        family = GaugeMetricFamily(
            "hodei_schedule_down",
            "1 while a schedule with alert_after_seconds is down (its last slot did not "
            "succeed in time), else 0.",
            labels=["schedule_id", "schedule"],
        )
        alerting = Schedule.objects.filter(alert_after_seconds__isnull=False).values_list(
            "pk", "name", "cron", "health"
        )
        for pk, name, cron, health in alerting:
            family.add_metric([str(pk), name or cron], 1 if health == ScheduleHealth.DOWN else 0)
        yield family

    def _blocked_gauges(self):
        family = GaugeMetricFamily(
            "hodei_queue_blocked",
            "Queued and pending executions by why they wait (GET /api/v1/executions/{id} "
            "explains one: waiting_reason).",
            labels=["reason"],
        )
        for reason, n in waiting.blocked_counts().items():
            family.add_metric([reason], n)
        yield family

    def _pool_gauges(self):
        """Each worker pool's agents: what its last decision wanted and what serves (one
        query; pools are few, one per worker type)."""
        family = GaugeMetricFamily(
            "hodei_pool_workers",
            "Agents of a worker pool: desired (its last decision), current (starting or "
            "running), draining.",
            labels=["pool", "worker_type", "state"],
        )
        for pool in selectors.pools_with_worker_counts():
            labels = [str(pool.pk), pool.worker_type]
            family.add_metric([*labels, "desired"], pool.desired_workers)
            family.add_metric([*labels, "current"], pool.current_workers)
            family.add_metric([*labels, "draining"], pool.draining_workers)
        yield family
