"""Bounds on what one user (or one mistake) can ask of the platform, each a clear 4xx;
queued executions no worker takes expire; /metrics labels stay bounded."""

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hodei.lib import clock
from tests.conftest import client_for
from tests.factories import ExecutionFactory, JobFactory
from workermanager.models import Execution, ManagedWorker
from workermanager.services import executions_expire_unclaimed

pytestmark = pytest.mark.django_db


def schedule(sched, job, **body):
    return sched.post("/api/v1/schedule", {"job_id": str(job.id), **body}, format="json")


def test_a_job_has_a_bounded_number_of_schedules(sched, settings):
    settings.HODEI_MAX_SCHEDULES_PER_JOB = 2
    job = JobFactory()
    for minute in (1, 2):
        assert schedule(sched, job, cron=f"{minute} 3 * * *").status_code == 201
    response = schedule(sched, job, cron="3 3 * * *")
    assert response.status_code == 409
    assert response.json()["error"] == "quota_exceeded"
    assert "HODEI_MAX_SCHEDULES_PER_JOB" in response.json()["detail"]
    other = JobFactory()
    assert schedule(sched, other, cron="3 3 * * *").status_code == 201


def test_the_platform_has_a_bounded_number_of_schedules(sched, settings):
    settings.HODEI_MAX_SCHEDULES = 1
    assert schedule(sched, JobFactory(), cron="1 3 * * *").status_code == 201
    assert schedule(sched, JobFactory(), cron="2 3 * * *").status_code == 409


def test_a_cron_more_frequent_than_the_minimum_interval_is_refused(sched, settings):
    settings.HODEI_MIN_SCHEDULE_INTERVAL_SECONDS = 10
    response = schedule(sched, JobFactory(), cron="* * * * * *")
    assert response.status_code == 400
    assert "shortest interval allowed is 10 s" in response.json()["fields"]["cron"][0]
    assert schedule(sched, JobFactory(), cron="*/10 * * * * *").status_code == 201


def test_managed_workers_are_bounded_in_number_and_concurrency(wm, settings):
    settings.HODEI_MAX_MANAGED_WORKERS = 1
    settings.HODEI_MAX_MANAGED_CONCURRENCY = 4
    too_wide = wm.post("/api/v1/workers", {"type": "default", "concurrency": 8}, format="json")
    assert too_wide.status_code == 400
    assert "concurrency" in too_wide.json()["fields"]
    ManagedWorker.objects.create(name="running-one", type="default", status="running")
    response = wm.post("/api/v1/workers", {"type": "default"}, format="json")
    assert response.status_code == 409
    assert "HODEI_MAX_MANAGED_WORKERS" in response.json()["detail"]
    assert ManagedWorker.objects.count() == 1  # nothing started


def test_queued_executions_no_worker_takes_expire_with_the_reason(settings):
    settings.HODEI_QUEUED_EXPIRY_SECONDS = 3600
    old = ExecutionFactory(worker_type="gpu-nobody-runs")
    Execution.objects.filter(pk=old.pk).update(available_at=clock.now() - timedelta(hours=2))
    fresh = ExecutionFactory(worker_type="gpu-nobody-runs")
    assert [e.pk for e in executions_expire_unclaimed()] == [old.pk]
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.status == "expired" and fresh.status == "queued"
    assert old.error == "No worker of type 'gpu-nobody-runs' took it within 1 h."
    assert old.finished_at is not None


def test_metrics_label_only_known_worker_types(settings):

    settings.HODEI_METRICS_PUBLIC = True
    JobFactory(worker_type="rust")
    for i in range(30):
        ExecutionFactory(worker_type=f"made-up-{i}")
    ExecutionFactory(worker_type="rust")
    text = client_for("workermanager").get("/metrics").content.decode()
    depth = {
        s.labels["worker_type"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "hodei_queue_depth"
    }
    assert depth == {"rust": 1, "other": 30}
