"""The admin of the worker registry, driven through Django's test client."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hodei.lib import clock
from tests.conftest import client_for
from tests.factories import (
    ExecutionFactory,
    WorkerFactory,
    action,
    change_url,
    messages_of,
)
from workermanager.choices import ExecutionStatus, WorkerStatus
from workermanager.models import Worker

pytestmark = pytest.mark.django_db

WORKERS = "/admin/workermanager/worker/"


def test_worker_changelist_shows_heartbeat_age_status_capacity_and_use(operator):
    now = clock.now()
    stale_age = timedelta(seconds=settings.HODEI_HEARTBEAT_SECONDS * 2 + 5)
    online = WorkerFactory(
        name="fresh", last_heartbeat_at=now, capacity=4, labels={"zone": "eu-1"}, type="rust"
    )
    WorkerFactory(name="quiet", last_heartbeat_at=now - stale_age)
    WorkerFactory(name="gone", last_heartbeat_at=now - timedelta(hours=1), status="offline")
    WorkerFactory(name="unborn", last_heartbeat_at=None)
    ExecutionFactory(worker=online, status=ExecutionStatus.RUNNING)
    ExecutionFactory(worker=online, status=ExecutionStatus.SUCCEEDED)
    response = operator.get(WORKERS)
    assert response.status_code == 200
    html = response.content.decode()
    rows = {row.split("</tr>")[0] for row in html.split("<tr")[1:]}

    def row_of(name):
        (row,) = [r for r in rows if f">{name}<" in r]
        return row

    assert "hodei-heartbeat-online" in row_of("fresh")
    assert "0s ago (online)" in row_of("fresh")
    assert "1 / 4" in row_of("fresh")
    assert "rust" in row_of("fresh")
    assert "eu-1" in operator.get(change_url(online)).content.decode()  # labels: its page
    assert "hodei-heartbeat-stale" in row_of("quiet")
    assert "hodei-heartbeat-offline" in row_of("gone")
    assert "1h 0m ago" in row_of("gone")
    assert "never" in row_of("unborn")
    assert "0 / 1" in row_of("quiet")


def test_worker_changelist_counts_running_work_without_joining_every_execution(operator):
    workers = WorkerFactory.create_batch(3, capacity=2)
    for worker in workers:
        ExecutionFactory(worker=worker, status=ExecutionStatus.RUNNING)
        ExecutionFactory.create_batch(3, worker=worker, status=ExecutionStatus.SUCCEEDED)
    with CaptureQueriesContext(connection) as queries:
        response = operator.get(WORKERS)
    assert response.status_code == 200
    admin = response.context["cl"].model_admin
    assert {admin.in_use(w) for w in response.context["cl"].result_list} == {"1 / 2"}
    for query in queries:
        # An aggregate over a join reads every execution a worker ever ran (10^6 rows).
        assert 'JOIN "workermanager_execution"' not in query["sql"], query["sql"]


def test_worker_changelist_filters_by_status_and_type(operator):
    rust = WorkerFactory(type="rust")
    offline = WorkerFactory(status="offline")
    assert list(operator.get(WORKERS, {"type__exact": "rust"}).context["cl"].result_list) == [rust]
    by_status = operator.get(WORKERS, {"status__exact": "offline"}).context["cl"].result_list
    assert list(by_status) == [offline]


def test_worker_page_lists_the_executions_it_is_running(operator):
    worker = WorkerFactory(last_heartbeat_at=clock.now())
    running = ExecutionFactory(worker=worker, status=ExecutionStatus.RUNNING, command="sleep 99")
    done = ExecutionFactory(worker=worker, status=ExecutionStatus.SUCCEEDED)
    response = operator.get(change_url(worker))
    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    assert [form.instance for form in formset.forms] == [running]
    html = response.content.decode()
    assert "sleep 99" in html and str(done.pk) not in html
    assert f"/admin/workermanager/execution/?worker__id__exact={worker.pk}" in html


def test_drain_and_undrain(operator):
    worker = WorkerFactory(last_heartbeat_at=clock.now())
    response = action(operator, WORKERS, "drain_selected", [worker])
    assert "1 worker(s) draining." in messages_of(response)
    worker.refresh_from_db()
    assert worker.status == WorkerStatus.DRAINING

    response = action(operator, WORKERS, "undrain_selected", [worker])
    assert "1 worker(s) taking work again." in messages_of(response)
    worker.refresh_from_db()
    assert worker.status == WorkerStatus.ONLINE


def test_a_draining_workers_heartbeat_keeps_it_draining(operator, operator_user):
    worker = WorkerFactory(last_heartbeat_at=clock.now() - timedelta(seconds=3))
    action(operator, WORKERS, "drain_selected", [worker])
    worker.refresh_from_db()
    worker.heartbeat(now=clock.now())
    worker.refresh_from_db()
    assert worker.status == WorkerStatus.DRAINING

    api = client_for("scheduler", operator_user)
    response = api.post(f"/api/v1/workers/{worker.pk}/heartbeat")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "draining"
    worker.refresh_from_db()
    assert worker.status == WorkerStatus.DRAINING


def test_drain_of_an_offline_worker_says_so_and_changes_nothing(operator):
    offline = WorkerFactory(status=WorkerStatus.OFFLINE)
    online = WorkerFactory()
    response = action(operator, WORKERS, "drain_selected", [offline, online])
    messages = messages_of(response)
    assert "1 worker(s) draining." in messages
    assert f"Worker {offline.name} is offline; only an online worker can drain." in messages
    offline.refresh_from_db()
    online.refresh_from_db()
    assert (offline.status, online.status) == (WorkerStatus.OFFLINE, WorkerStatus.DRAINING)


def test_undrain_of_a_worker_that_is_not_draining_says_so(operator):
    online = WorkerFactory()
    response = action(operator, WORKERS, "undrain_selected", [online])
    messages = messages_of(response)
    assert "1 worker(s) taking work again." not in messages
    assert f"Worker {online.name} is online; only a draining worker can undrain." in messages
    online.refresh_from_db()
    assert online.status == WorkerStatus.ONLINE


def test_workers_are_not_added_or_edited_by_hand(operator):
    worker = WorkerFactory(name="agent-1", capacity=2)
    assert operator.get(WORKERS + "add/").status_code == 403
    page = operator.get(change_url(worker))
    assert page.status_code == 200
    assert 'name="capacity"' not in page.content.decode()
    operator.post(change_url(worker), {"name": "renamed", "capacity": "64"})
    worker.refresh_from_db()
    assert (worker.name, worker.capacity) == ("agent-1", 2)


def test_viewer_cannot_drain(viewer):
    worker = WorkerFactory()
    assert "drain_selected" not in viewer.get(WORKERS).content.decode()
    action(viewer, WORKERS, "drain_selected", [worker])
    worker.refresh_from_db()
    assert worker.status == WorkerStatus.ONLINE
    assert Worker.objects.count() == 1
