"""Managed workers through the API start and stop real agent processes. They run in
HTTP mode: they talk to a real worker manager (gunicorn) with a credential made for
them, and hold no database credentials or secret key."""

import os
import socket
from pathlib import Path

import pytest

from tests.processes import start_service, stop, wait_for
from workermanager.choices import ExecutionStatus, ManagedWorkerStatus, WorkerStatus
from workermanager.models import Execution, ManagedWorker, Worker, WorkerCredential
from workermanager.services import execution_enqueue
from workermanager.tasks import maintain_workers

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def workermanager_service(child_env):
    proc, base = start_service(child_env, "workermanager", args=("--threads", "8"))
    yield base
    stop(proc)


@pytest.fixture(autouse=True)
def agents_reach_the_worker_manager(workermanager_service, settings):
    settings.HODEI_WORKERMANAGER_URL = workermanager_service
    # The agents heartbeat as that service expects (child_env's values).
    settings.HODEI_HEARTBEAT_SECONDS = 0.5
    settings.HODEI_POLL_SECONDS = 0.2


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


def test_a_managed_agent_holds_its_credential_and_no_database_secrets(wm, started):
    body = started().json()
    raw = Path(f"/proc/{body['pid']}/environ").read_bytes().decode()
    environ = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
    for secret in ("DATABASE_URL", "SECRET_KEY", "HODEI_SECRETS_KEY"):
        assert secret not in environ, secret
    assert environ["HODEI_AGENT_TOKEN"].startswith("hodei_wkr_")
    assert "--server" in Path(f"/proc/{body['pid']}/cmdline").read_bytes().decode()
    credential = WorkerCredential.objects.get(worker_id=body["worker_id"])
    assert credential.revoked_at is None and credential.last_used_at is not None
    assert environ["HODEI_AGENT_TOKEN"] not in Path(f"/proc/{body['pid']}/cmdline").read_text()

    wm.delete(f"/api/v1/workers/{body['id']}")
    credential.refresh_from_db()
    assert credential.revoked_at and "stopped" in credential.revoked_reason


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
