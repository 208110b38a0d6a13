"""/metrics on every service: process metrics, shared domain series, state gauges."""

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hodei.lib import clock
from scheduler.services import schedule_create, schedule_fire
from telemetry import metrics
from telemetry.models import MetricValue
from tests.conftest import client_for
from tests.factories import JobFactory, UserFactory, WorkerFactory
from workermanager.choices import ExecutionStatus
from workermanager.models import Execution
from workermanager.services import (
    execution_cancel,
    execution_enqueue,
    execution_settle,
    executions_claim,
)


def scrape(client) -> dict:
    # What a committed transaction would have flushed (tests run inside one).
    metrics.buffer.flush()
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = sample.value
    return samples


@pytest.mark.parametrize("service", ["orchestrator", "scheduler", "workermanager"])
def test_every_service_serves_metrics_to_authorised_clients_only(db, service, make_client):
    assert make_client(service, anonymous=True).get("/metrics").status_code == 401
    assert make_client(service).get("/metrics").status_code == 403
    viewer = make_client(service, perms=("workermanager.view_execution",))
    samples = scrape(viewer)
    assert ("hodei_workers", (("status", "online"),)) in samples


def test_metrics_can_be_made_public(db, settings):
    settings.HODEI_METRICS_PUBLIC = True
    assert client_for("orchestrator").get("/metrics").status_code == 200


def test_http_metrics_from_django_prometheus_are_included(db):
    client = client_for("orchestrator", UserFactory(is_superuser=True))
    client.get("/api/v1/pipelines")
    names = {name for name, _ in scrape(client)}
    assert any(name.startswith("django_http_requests") for name in names)


def test_each_request_counts_in_its_own_view_method_and_status_series(db):
    # hodei.middleware.PrometheusAfterMiddleware keeps each labelled child once per
    # process: the counts must land in the series of their own labels, as django-
    # prometheus' own labels() would put them.
    client = client_for("workermanager", UserFactory(is_superuser=True))

    def counts():
        samples = scrape(client)
        name = "django_http_responses_total_by_status_view_method_total"
        return {
            (labels["status"], labels["view"], labels["method"]): value
            for (sample, pairs), value in samples.items()
            if sample == name and (labels := dict(pairs))
        }

    before = counts()
    for _ in range(3):
        assert client.post("/api/v1/execute", {"command": "true"}, format="json").status_code == 201
    for _ in range(2):
        assert (
            client.post("/api/v1/execute", {"timeout_seconds": -1}, format="json").status_code
            == 400
        )
    assert client.get("/api/v1/executions").status_code == 200
    after = counts()

    def grew(key):
        return after.get(key, 0) - before.get(key, 0)

    assert grew(("201", "execute", "POST")) == 3
    assert grew(("400", "execute", "POST")) == 2
    assert grew(("200", "execution-list", "GET")) == 1
    assert grew(("200", "execute", "POST")) == 0


def test_finished_executions_are_counted_by_status_and_type_with_durations(db):
    worker = WorkerFactory()
    ok = execution_enqueue(command="true", type="sh")
    assert executions_claim(worker=worker, limit=1) == [ok]
    Execution.objects.filter(pk=ok.pk).update(started_at=clock.now() - timedelta(seconds=2))
    ok.refresh_from_db()
    execution_settle(execution=ok, worker=worker, status=ExecutionStatus.SUCCEEDED, exit_code=0)
    execution_cancel(execution=execution_enqueue(command="sleep 1"))

    samples = scrape(client_for("workermanager", UserFactory(is_superuser=True)))
    finished = "hodei_executions_finished_total"
    assert samples[(finished, (("status", "succeeded"), ("type", "sh")))] == 1
    assert samples[(finished, (("status", "cancelled"), ("type", "bash")))] == 1
    count = samples[
        ("hodei_execution_duration_seconds_count", (("status", "succeeded"), ("type", "sh")))
    ]
    assert count == 1
    le5 = samples[
        (
            "hodei_execution_duration_seconds_bucket",
            (("le", "5.0"), ("status", "succeeded"), ("type", "sh")),
        )
    ]
    assert le5 == 1
    assert samples[("hodei_execution_queue_wait_seconds_count", (("worker_type", ""),))] == 1


def test_queue_gauges_are_computed_at_scrape_time(db):
    WorkerFactory(type="gpu")  # a known worker type (others are counted as "other")
    execution_enqueue(command="true", worker_type="gpu")
    execution_enqueue(command="true", worker_type="gpu")
    samples = scrape(client_for("scheduler", UserFactory(is_superuser=True)))
    assert samples[("hodei_queue_depth", (("worker_type", "gpu"),))] == 2
    assert samples[("hodei_queue_oldest_age_seconds", (("worker_type", "gpu"),))] >= 0


def test_schedule_lag_and_skipped_slots_are_recorded(db, monkeypatch):
    schedule = schedule_create(job=JobFactory(), cron="* * * * * *", overlap_policy="forbid")
    first = schedule.next_run_at
    monkeypatch.setattr(clock, "now", lambda: first + timedelta(milliseconds=300))
    schedule_fire(schedule_id=schedule.pk, slot=first)
    monkeypatch.setattr(clock, "now", lambda: first + timedelta(seconds=1, milliseconds=40))
    schedule_fire(schedule_id=schedule.pk, slot=first + timedelta(seconds=1))  # still queued
    samples = scrape(client_for("scheduler", UserFactory(is_superuser=True)))
    assert samples[("hodei_schedule_fire_lag_seconds_count", ())] == 1
    assert samples[("hodei_schedule_fire_lag_seconds_bucket", (("le", "0.25"),))] == 0
    assert samples[("hodei_schedule_fire_lag_seconds_bucket", (("le", "0.5"),))] == 1
    assert samples[("hodei_schedule_slots_skipped_total", (("reason", "overlap"),))] == 1


def test_increments_from_many_flushes_add_up(db):
    for _ in range(3):
        metrics.inc("hodei_log_bytes_stored_total", 100)
        metrics.buffer.flush()
    assert MetricValue.objects.get(name="hodei_log_bytes_stored_total").value == 300
