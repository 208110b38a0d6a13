"""Managed workers through the API start and stop real agent processes."""

import os
import socket
from pathlib import Path

import pytest

from tests.processes import wait_for
from workermanager.choices import ExecutionStatus, ManagedWorkerStatus, WorkerStatus
from workermanager.models import Execution, ManagedWorker, Worker
from workermanager.services import execution_enqueue
from workermanager.tasks import maintain_workers

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def process_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.fixture
def started(wm):
    """Start a managed worker through the API; stop it whatever the test did."""
    ids = []

    def start(**body):
        response = wm.post("/api/v1/workers", {"type": "default", **body}, format="json")
        if response.status_code == 201:
            ids.append(response.json()["id"])
        return response

    yield start
    for managed_id in ids:
        wm.delete(f"/api/v1/workers/{managed_id}")


def test_start_runs_a_real_agent_that_registers_and_runs_work(wm, started):
    response = started(concurrency=2, labels={"zone": "a"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "running"
    assert body["started_at"] and body["host"] == socket.gethostname()
    assert process_running(body["pid"])
    worker = Worker.objects.get(pk=body["worker_id"])
    assert (worker.status, worker.capacity, worker.labels) == (
        WorkerStatus.ONLINE,
        2,
        {"zone": "a"},
    )

    execution = execution_enqueue(command="echo from managed")
    wait_for(lambda: Execution.objects.get(pk=execution.pk).status == ExecutionStatus.SUCCEEDED)
    assert Execution.objects.get(pk=execution.pk).worker_id == worker.id


def test_delete_stops_the_process_gracefully_and_twice_is_harmless(wm, started):
    body = started().json()
    response = wm.delete(f"/api/v1/workers/{body['id']}")
    assert response.status_code == 200
    stopped = response.json()
    assert stopped["status"] == "stopped"
    assert stopped["stopped_at"]
    assert not process_running(body["pid"])
    assert Worker.objects.get(pk=body["worker_id"]).status == WorkerStatus.OFFLINE
    again = wm.delete(f"/api/v1/workers/{body['id']}")
    assert again.status_code == 200
    assert again.json()["stopped_at"] == stopped["stopped_at"]


def test_the_maintenance_task_finds_a_process_that_died(wm, started):
    body = started().json()
    status = wm.get(f"/api/v1/workers/{body['id']}/status").json()
    assert status["status"] == "running"
    assert status["worker_id"] == body["worker_id"]
    os.kill(body["pid"], 9)
    wait_for(lambda: not process_running(body["pid"]))
    # Reads never probe or write; the maintenance task (every minute) reconciles.
    assert wm.get(f"/api/v1/workers/{body['id']}").json()["status"] == "running"
    assert "1 managed worker(s) found dead" in maintain_workers()
    detail = wm.get(f"/api/v1/workers/{body['id']}").json()
    assert detail["status"] == "failed"
    assert "exited" in detail["failure_reason"]
    listed = wm.get("/api/v1/workers").json()
    assert [w["status"] for w in listed if w["id"] == body["id"]] == ["failed"]


def test_a_worker_that_cannot_start_gives_503_with_the_reason(wm, settings, tmp_path):
    # A Python that cannot run manage.py: the agent exits at once.
    settings.BASE_DIR = tmp_path
    response = wm.post("/api/v1/workers", {"type": "default"}, format="json")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failed"
    assert body["error"] == "unavailable"
    assert "exited" in body["detail"]
    assert ManagedWorker.objects.get(pk=body["id"]).status == ManagedWorkerStatus.FAILED


@pytest.mark.parametrize(
    "body",
    [{}, {"type": ""}, {"type": "bad type!"}, {"type": "x", "concurrency": 0}],
)
def test_bad_start_requests_are_400(wm, body):
    response = wm.post("/api/v1/workers", body, format="json")
    assert response.status_code == 400
    assert response.json()["fields"]
    assert not ManagedWorker.objects.exists()
