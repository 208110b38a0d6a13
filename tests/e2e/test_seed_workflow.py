"""The seed's complete workflow over real HTTP, against the three services running as
real gunicorn processes on free ports."""

import pytest
import requests

from accounts.models import token_create
from tests.factories import UserFactory
from tests.processes import free_port, start_service, stop, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def services(child_env, django_db_blocker):
    started = {}
    # Managed workers run in HTTP mode: they talk to the worker manager at its URL.
    port = free_port()
    env = {**child_env, "HODEI_WORKERMANAGER_URL": f"http://127.0.0.1:{port}"}
    try:
        for name in ("orchestrator", "scheduler", "workermanager"):
            started[name] = start_service(env, name, port=port if name == "workermanager" else None)
        yield {name: base for name, (_, base) in started.items()}
    finally:
        for proc, _ in started.values():
            stop(proc)


@pytest.fixture
def http():
    user = UserFactory(username="e2e", is_superuser=True, is_staff=True)
    _, token = token_create(user=user)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def test_seed_complete_workflow(services, http):
    orch, sched, wm = services["orchestrator"], services["scheduler"], services["workermanager"]
    for name, base in services.items():
        health = requests.get(f"{base}/health", timeout=5).json()
        if name == "scheduler" and health["status"] == "degraded":
            # No qcluster runs in this test: the scheduler says so (and still answers).
            assert "qcluster" in health["detail"]
        else:
            assert health["status"] == "healthy", (name, health)

    pipeline = http.post(
        f"{orch}/api/v1/pipelines",
        json={"name": "build-pipeline", "description": "Build and test application"},
    )
    assert pipeline.status_code == 201, pipeline.text
    pipeline_id = pipeline.json()["id"]

    job = http.post(
        f"{orch}/api/v1/jobs",
        json={"pipeline_id": pipeline_id, "name": "build", "command": "echo built $HODEI_ATTEMPT"},
    )
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    assert job.json()["status"] == "pending"

    schedule = http.post(f"{sched}/api/v1/schedule", json={"job_id": job_id, "cron": "0 3 * * *"})
    assert schedule.status_code == 201, schedule.text
    assert schedule.json()["status"] == "scheduled"

    registered = http.post(f"{sched}/api/v1/workers", json={"type": "rust"})
    assert registered.status_code == 201
    assert registered.json()["status"] == "online"
    beat = http.post(f"{sched}/api/v1/workers/{registered.json()['id']}/heartbeat")
    assert beat.status_code == 200

    started = http.post(f"{wm}/api/v1/workers", json={"type": "rust"}, timeout=30)
    assert started.status_code == 201, started.text
    managed = started.json()
    assert managed["status"] == "running"
    try:
        execution = http.post(f"{wm}/api/v1/execute", json={"job_id": job_id})
        assert execution.status_code == 201, execution.text
        execution_id = execution.json()["id"]
        assert execution.json()["status"] == "queued"

        def finished():
            body = http.get(f"{wm}/api/v1/executions/{execution_id}").json()
            return body if body["status"] not in ("queued", "running") else None

        done = wait_for(finished, timeout=20)
        assert done["status"] == "succeeded"
        assert done["exit_code"] == 0
        assert done["worker_id"] == managed["worker_id"]
        logs = http.get(f"{wm}/api/v1/executions/{execution_id}/logs").json()
        assert logs["complete"] is True
        assert [entry["message"] for entry in logs["logs"]] == ["built 1\n"]
        assert http.get(f"{orch}/api/v1/jobs/{job_id}/status").json() == {
            "id": job_id,
            "status": "succeeded",
        }
    finally:
        stopped = http.delete(f"{wm}/api/v1/workers/{managed['id']}", timeout=30)
    assert stopped.json()["status"] == "stopped"

    listings = {
        "pipelines": http.get(f"{orch}/api/v1/pipelines").json(),
        "jobs": http.get(f"{orch}/api/v1/jobs").json(),
        "scheduled": http.get(f"{sched}/api/v1/scheduled").json(),
        "registered workers": http.get(f"{sched}/api/v1/workers").json(),
        "managed workers": http.get(f"{wm}/api/v1/workers").json(),
        "executions": http.get(f"{wm}/api/v1/executions").json(),
    }
    for name, items in listings.items():
        assert isinstance(items, list) and items, name
    assert pipeline_id in {p["id"] for p in listings["pipelines"]}
    assert job_id in {j["id"] for j in listings["jobs"]}
    assert execution_id in {e["id"] for e in listings["executions"]}
    assert managed["worker_id"] in {w["id"] for w in listings["registered workers"]}


def test_each_service_serves_only_its_own_paths(services, http):
    assert http.get(f"{services['scheduler']}/api/v1/pipelines").status_code == 404
    assert http.get(f"{services['orchestrator']}/api/v1/executions").status_code == 404
    assert http.get(f"{services['orchestrator']}/api/v1/nope-unknown").status_code == 404
    assert requests.get(f"{services['workermanager']}/api/v1/executions").status_code == 401
