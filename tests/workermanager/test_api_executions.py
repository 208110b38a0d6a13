"""Contract tests of the worker manager's execution API (not managed workers)."""

import uuid
from datetime import timedelta

import pytest

from hodei.lib import clock
from orchestrator.models import Job
from tests.factories import (
    ExecutionFactory,
    ExecutionLogFactory,
    JobFactory,
    WorkerFactory,
    start,
)
from workermanager.models import Execution

pytestmark = pytest.mark.django_db

EXECUTION_FIELDS = {
    "id",
    "job_id",
    "command",
    "type",
    "worker_type",
    "status",
    "exit_code",
    "worker_id",
    "attempt",
    "retry_of",
    "trigger",
    "created_at",
    "started_at",
    "finished_at",
    "duration_ms",
    "cancel_requested",
}


def assert_field_error(response, field: str) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "invalid"
    assert field in body["fields"], body


def links(response) -> dict[str, str]:
    out = {}
    for part in response.headers.get("Link", "").split(","):
        if part.strip():
            url, rel = part.split(";", 1)
            out[rel.strip().removeprefix("rel=").strip('"')] = url.strip().strip("<>")
    return out


def finished(status: str = "failed", exit_code: int | None = 1, **kwargs) -> Execution:
    """An execution that ran on a worker and ended with ``status``."""
    execution = ExecutionFactory(**kwargs)
    now = clock.now()
    start(execution, worker=WorkerFactory(), now=now - timedelta(seconds=2))
    if status == "lost":
        assert execution.lose(now=now, reason="worker gone")
    else:
        code = exit_code if status in ("succeeded", "failed") else None
        assert execution.settle(status=status, now=now, exit_code=code)
    return execution


# -- execute -----------------------------------------------------------------------


def test_it_queues_an_execution_of_a_job(wm):
    job = JobFactory(
        command="make build",
        type="sh",
        worker_type="rust",
        env={"A": "job", "B": "job"},
        timeout_seconds=120,
    )
    response = wm.post("/api/v1/execute", {"job_id": str(job.id)}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= EXECUTION_FIELDS
    assert uuid.UUID(body["id"])
    assert body["job_id"] == str(job.id)
    assert body["command"] == "make build"
    assert body["type"] == "sh"
    assert body["worker_type"] == "rust"
    assert body["env"] == {"A": "job", "B": "job"}
    assert body["timeout_seconds"] == 120
    assert body["status"] == "queued"
    assert body["attempt"] == 1
    assert body["retry_of"] is None
    assert body["trigger"] == "api"
    assert body["worker_id"] is None
    assert body["exit_code"] is None
    assert body["started_at"] is None
    assert body["duration_ms"] is None
    assert body["cancel_requested"] is False
    assert Execution.objects.get(pk=body["id"]).status == "queued"
    job.refresh_from_db()
    assert job.status == "queued"


def test_the_request_overrides_the_job_defaults(wm):
    job = JobFactory(command="make", env={"A": "job", "B": "job"}, timeout_seconds=120)
    response = wm.post(
        "/api/v1/execute",
        {
            "job_id": str(job.id),
            "command": "print(1)",
            "type": "python",
            "worker_type": "gpu",
            "env": {"B": "override", "C": "new"},
            "timeout_seconds": 5,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["command"] == "print(1)"
    assert body["type"] == "python"
    assert body["worker_type"] == "gpu"
    assert body["env"] == {"A": "job", "B": "override", "C": "new"}
    assert body["timeout_seconds"] == 5


def test_it_runs_a_bare_command(wm):
    response = wm.post("/api/v1/execute", {"command": "echo hi"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["job_id"] is None
    assert body["command"] == "echo hi"
    assert body["type"] == "bash"
    assert body["status"] == "queued"


def test_the_job_secret_env_is_not_exposed_by_an_execution(wm):
    job = JobFactory(secret_env={"TOKEN": "hush-hush-value"})
    response = wm.post("/api/v1/execute", {"job_id": str(job.id)}, format="json")
    assert response.status_code == 201
    assert "hush-hush-value" not in response.content.decode()
    detail = wm.get(f"/api/v1/executions/{response.json()['id']}")
    assert "hush-hush-value" not in detail.content.decode()


def test_a_job_with_an_empty_command_succeeds_at_once(wm):
    job = JobFactory(command="")
    response = wm.post("/api/v1/execute", {"job_id": str(job.id)}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["exit_code"] == 0
    assert body["started_at"] is not None
    assert body["finished_at"] is not None
    assert body["duration_ms"] == 0
    job.refresh_from_db()
    assert job.status == "succeeded"


@pytest.mark.parametrize(
    "payload, field",
    [
        ({}, "command"),
        ({"command": ""}, "command"),
        ({"job_id": None}, "command"),
        ({"job_id": str(uuid.uuid4())}, "job_id"),
        ({"job_id": "not-a-uuid"}, "job_id"),
        ({"job_id": ["x"]}, "job_id"),
        ({"command": "true", "type": "ruby"}, "type"),
        ({"command": "true", "worker_type": "bad type"}, "worker_type"),
        ({"command": "true", "timeout_seconds": 0}, "timeout_seconds"),
        ({"command": "true", "timeout_seconds": 10**30}, "timeout_seconds"),
        ({"command": "true", "env": {"A": 1}}, "env"),
        ({"command": "true", "env": {"9": "x"}}, "env"),
        ({"command": ["echo", "hi"]}, "command"),
        ({"command": {"run": "echo"}}, "command"),
    ],
)
def test_it_rejects_an_invalid_execute_request(wm, payload, field):
    assert_field_error(wm.post("/api/v1/execute", payload, format="json"), field)
    assert not Execution.objects.exists()


# -- list and detail ---------------------------------------------------------------


def test_it_lists_executions_as_a_bare_array(wm):
    executions = ExecutionFactory.create_batch(3)
    response = wm.get("/api/v1/executions")
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, list)
    assert [e["id"] for e in body] == [str(e.id) for e in reversed(executions)]
    assert set(body[0]) >= EXECUTION_FIELDS


def test_it_paginates_executions(wm):
    executions = ExecutionFactory.create_batch(5)
    ids, url = [], "/api/v1/executions?limit=2"
    while url:
        response = wm.get(url)
        ids += [e["id"] for e in response.json()]
        url = links(response).get("next")
    assert ids == [str(e.id) for e in reversed(executions)]


def test_it_filters_executions(wm):
    job = JobFactory()
    mine = ExecutionFactory(job=job, type="python")
    other = finished("failed", type="sh")

    def ids(query):
        response = wm.get(f"/api/v1/executions?{query}")
        assert response.status_code == 200, response.content
        return [e["id"] for e in response.json()]

    assert ids(f"job_id={job.id}") == [str(mine.id)]
    assert ids("status=queued") == [str(mine.id)]
    assert ids("status=failed") == [str(other.id)]
    assert ids("type=sh") == [str(other.id)]
    assert ids("type=python") == [str(mine.id)]
    assert ids(f"job_id={job.id}&status=failed") == []


@pytest.mark.parametrize(
    "query, field",
    [
        ("status=bogus", "status"),
        ("status=%00", "status"),
        ("job_id=notauuid", "job_id"),
        ("type=ruby", "type"),
        ("limit=-1", "limit"),
        ("cursor=garbage", "cursor"),
    ],
)
def test_it_rejects_bad_execution_filters(wm, query, field):
    assert_field_error(wm.get(f"/api/v1/executions?{query}"), field)


def test_it_retrieves_an_execution_with_every_field(wm):
    job = JobFactory(command="exit 3", worker_type="rust")
    execution = ExecutionFactory(job=job, worker_type="rust")
    worker = WorkerFactory(type="rust")
    started = clock.now() - timedelta(seconds=3)
    start(execution, worker=worker, now=started)
    execution.settle(status="failed", exit_code=3, now=started + timedelta(milliseconds=1500))

    response = wm.get(f"/api/v1/executions/{execution.id}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= EXECUTION_FIELDS
    assert body["id"] == str(execution.id)
    assert body["job_id"] == str(job.id)
    assert body["command"] == "exit 3"
    assert body["type"] == "bash"
    assert body["worker_type"] == "rust"
    assert body["status"] == "failed"
    assert body["exit_code"] == 3
    assert body["worker_id"] == str(worker.id)
    assert body["attempt"] == 1
    assert body["retry_of"] is None
    assert body["trigger"] == "api"
    assert body["created_at"] and body["started_at"] and body["finished_at"]
    assert body["duration_ms"] == 1500
    assert body["cancel_requested"] is False


@pytest.mark.parametrize("pk", [str(uuid.uuid4()), "not-a-uuid"])
def test_an_unknown_execution_is_404(wm, pk):
    for response in (
        wm.get(f"/api/v1/executions/{pk}"),
        wm.get(f"/api/v1/executions/{pk}/logs"),
        wm.post(f"/api/v1/executions/{pk}/cancel"),
        wm.post(f"/api/v1/executions/{pk}/retry"),
    ):
        assert response.status_code == 404, response.content
        assert response.json()["error"] == "not_found"


def test_listing_executions_uses_a_constant_number_of_queries(wm, django_assert_max_num_queries):
    wm.get("/api/v1/executions")
    worker = WorkerFactory()
    for execution in ExecutionFactory.create_batch(50):
        start(execution, worker=worker, now=clock.now())
    with django_assert_max_num_queries(2):
        response = wm.get("/api/v1/executions")
    assert len(response.json()) == 50
    assert {e["worker_id"] for e in response.json()} == {str(worker.id)}


# -- logs --------------------------------------------------------------------------


def test_it_returns_the_log_of_an_execution(wm):
    execution = finished("succeeded", exit_code=0)
    ExecutionLogFactory(execution=execution, seq=0, stream="stdout", message="out line\n")
    ExecutionLogFactory(execution=execution, seq=1, stream="stderr", message="err line\n")
    response = wm.get(f"/api/v1/executions/{execution.id}/logs")
    assert response.status_code == 200
    body = response.json()
    assert body["execution_id"] == str(execution.id)
    assert body["next_offset"] == 2
    assert body["complete"] is True
    assert [(e["level"], e["message"]) for e in body["logs"]] == [
        ("info", "out line\n"),
        ("error", "err line\n"),
    ]
    assert [e["stream"] for e in body["logs"]] == ["stdout", "stderr"]
    assert all(e["timestamp"] for e in body["logs"])


def test_the_log_pages_with_offset_and_limit(wm):
    execution = finished("failed")
    for seq in range(5):
        ExecutionLogFactory(execution=execution, seq=seq, message=f"chunk {seq}\n")
    url = f"/api/v1/executions/{execution.id}/logs"

    first = wm.get(f"{url}?limit=2").json()
    assert [e["message"] for e in first["logs"]] == ["chunk 0\n", "chunk 1\n"]
    assert first["next_offset"] == 2
    assert first["complete"] is False

    second = wm.get(f"{url}?offset={first['next_offset']}&limit=2").json()
    assert [e["message"] for e in second["logs"]] == ["chunk 2\n", "chunk 3\n"]
    assert second["complete"] is False

    last = wm.get(f"{url}?offset={second['next_offset']}&limit=2").json()
    assert [e["message"] for e in last["logs"]] == ["chunk 4\n"]
    assert last["next_offset"] == 5
    assert last["complete"] is True

    past_the_end = wm.get(f"{url}?offset=5").json()
    assert past_the_end["logs"] == []
    assert past_the_end["next_offset"] == 5
    assert past_the_end["complete"] is True


def test_the_log_of_a_running_execution_is_never_complete(wm):
    execution = ExecutionFactory()
    start(execution, worker=WorkerFactory(), now=clock.now())
    ExecutionLogFactory(execution=execution, seq=0)
    body = wm.get(f"/api/v1/executions/{execution.id}/logs").json()
    assert len(body["logs"]) == 1
    assert body["complete"] is False
    tail = wm.get(f"/api/v1/executions/{execution.id}/logs?offset={body['next_offset']}").json()
    assert tail["logs"] == []
    assert tail["next_offset"] == 1
    assert tail["complete"] is False


def test_the_log_is_only_of_that_execution(wm):
    execution = finished("succeeded", exit_code=0)
    ExecutionLogFactory(execution=execution, seq=0, message="mine\n")
    ExecutionLogFactory(seq=0, message="someone else's\n")
    body = wm.get(f"/api/v1/executions/{execution.id}/logs").json()
    assert [e["message"] for e in body["logs"]] == ["mine\n"]


@pytest.mark.parametrize(
    "query, field",
    [
        ("offset=-1", "offset"),
        ("offset=abc", "offset"),
        ("offset=99999999999", "offset"),
        ("limit=0", "limit"),
        ("limit=5001", "limit"),
        ("limit=%00", "limit"),
    ],
)
def test_it_rejects_bad_log_paging(wm, query, field):
    execution = ExecutionFactory()
    assert_field_error(wm.get(f"/api/v1/executions/{execution.id}/logs?{query}"), field)


# -- cancel ------------------------------------------------------------------------


def test_it_cancels_a_queued_execution(wm):
    execution = ExecutionFactory()
    response = wm.post(f"/api/v1/executions/{execution.id}/cancel")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["cancel_requested"] is True
    assert body["finished_at"] is not None
    execution.refresh_from_db()
    assert execution.status == "cancelled"


def test_cancelling_a_running_execution_asks_its_worker(wm):
    execution = ExecutionFactory()
    start(execution, worker=WorkerFactory(), now=clock.now())
    response = wm.post(f"/api/v1/executions/{execution.id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "running"
    assert response.json()["cancel_requested"] is True
    execution.refresh_from_db()
    assert execution.cancel_requested is True


@pytest.mark.parametrize("status", ["succeeded", "failed", "timed_out", "lost", "cancelled"])
def test_cancel_rejects_finished_execution(wm, status):
    execution = finished(status, exit_code=0 if status == "succeeded" else 1)
    response = wm.post(f"/api/v1/executions/{execution.id}/cancel")
    assert response.status_code == 409, response.content
    assert response.json()["error"] == "invalid_transition"
    execution.refresh_from_db()
    assert execution.status == status


# -- retry -------------------------------------------------------------------------


def test_it_retries_a_finished_execution(wm):
    job = JobFactory(command="exit 1", env={"A": "1"})
    original = finished("failed", job=job, env={"A": "1", "B": "2"}, timeout_seconds=9)
    response = wm.post(f"/api/v1/executions/{original.id}/retry")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] != str(original.id)
    assert body["attempt"] == 2
    assert body["retry_of"] == str(original.id)
    assert body["status"] == "queued"
    assert body["job_id"] == str(job.id)
    assert body["command"] == "exit 1"
    assert body["env"] == {"A": "1", "B": "2"}
    assert body["timeout_seconds"] == 9
    original.refresh_from_db()
    assert original.status == "failed"
    assert Job.objects.get(pk=job.pk).status == "queued"


def test_retrying_the_retry_makes_attempt_three(wm):
    original = finished("failed")
    retry = wm.post(f"/api/v1/executions/{original.id}/retry").json()
    Execution.objects.filter(pk=retry["id"]).update(status="failed")
    third = wm.post(f"/api/v1/executions/{retry['id']}/retry")
    assert third.status_code == 201
    assert third.json()["attempt"] == 3
    assert third.json()["retry_of"] == retry["id"]


def test_an_execution_is_retried_only_once(wm):
    original = finished("failed")
    assert wm.post(f"/api/v1/executions/{original.id}/retry").status_code == 201
    again = wm.post(f"/api/v1/executions/{original.id}/retry")
    assert again.status_code == 409, again.content
    assert again.json()["error"] == "invalid_transition"
    assert Execution.objects.filter(retry_of=original).count() == 1


@pytest.mark.parametrize("state", ["queued", "running"])
def test_retry_rejects_an_unfinished_execution(wm, state):
    execution = ExecutionFactory()
    if state == "running":
        start(execution, worker=WorkerFactory(), now=clock.now())
    response = wm.post(f"/api/v1/executions/{execution.id}/retry")
    assert response.status_code == 409
    assert response.json()["error"] == "invalid_transition"
    assert Execution.objects.count() == 1
