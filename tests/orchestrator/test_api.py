"""Contract tests of the orchestrator API: pipelines and jobs."""

import threading
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from orchestrator import services
from orchestrator.models import Job, Pipeline
from scheduler.models import Schedule
from tests.factories import JobFactory, PipelineFactory, ScheduleFactory, stored_secrets
from workermanager.services import execution_enqueue

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-value-that-must-never-leak"


def links(response) -> dict[str, str]:
    """The ``Link`` header as {rel: url}."""
    out = {}
    for part in response.headers.get("Link", "").split(","):
        if not part.strip():
            continue
        url, rel = part.split(";", 1)
        out[rel.strip().removeprefix("rel=").strip('"')] = url.strip().strip("<>")
    return out


def assert_field_error(response, field: str, status: int = 400) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"] == "invalid"
    assert field in body["fields"], body


def walk_pages(client, url: str) -> list[list[dict]]:
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        pages.append(response.json())
        url = links(response).get("next")
        assert len(pages) < 100, "pagination does not terminate"
    return pages


# -- pipelines ---------------------------------------------------------------------


def test_it_creates_a_pipeline(orch):
    response = orch.post(
        "/api/v1/pipelines",
        {"name": "my-pipeline", "description": "CI/CD pipeline"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "my-pipeline"
    assert body["description"] == "CI/CD pipeline"
    assert body["status"] == "active"
    assert body["metadata"] == {}
    assert uuid.UUID(body["id"])
    assert body["created_at"].endswith("Z")
    assert body["updated_at"]
    pipeline = Pipeline.objects.get(pk=body["id"])
    assert pipeline.name == "my-pipeline"


def test_it_creates_a_pipeline_with_only_a_name(orch):
    response = orch.post("/api/v1/pipelines", {"name": "bare"}, format="json")
    assert response.status_code == 201
    assert response.json()["description"] == ""


@pytest.mark.parametrize(
    "payload, field",
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": None}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "ok", "status": "deleted"}, "status"),
        ({"name": "ok", "metadata": []}, "metadata"),
        ({"name": "ok", "metadata": "text"}, "metadata"),
    ],
)
def test_it_rejects_an_invalid_pipeline(orch, payload, field):
    assert_field_error(orch.post("/api/v1/pipelines", payload, format="json"), field)
    assert not Pipeline.objects.exists()


def test_it_keeps_pipeline_metadata(orch):
    metadata = {"team": "core", "nested": {"list": [1, 2.5, None, True]}}
    response = orch.post("/api/v1/pipelines", {"name": "p", "metadata": metadata}, format="json")
    assert response.status_code == 201
    assert response.json()["metadata"] == metadata
    assert orch.get(f"/api/v1/pipelines/{response.json()['id']}").json()["metadata"] == metadata


def test_it_lists_pipelines_as_a_bare_array_newest_first(orch):
    first, second = PipelineFactory(), PipelineFactory()
    response = orch.get("/api/v1/pipelines")
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, list)
    assert [p["id"] for p in body] == [str(second.id), str(first.id)]
    assert "Link" not in response.headers


def test_it_paginates_pipelines_with_a_link_header(orch):
    created = [PipelineFactory() for _ in range(7)]
    response = orch.get("/api/v1/pipelines?limit=3")
    assert len(response.json()) == 3
    next_url = links(response)["next"]
    assert "cursor=" in next_url and "limit=3" in next_url

    pages = walk_pages(orch, "/api/v1/pipelines?limit=3")
    assert [len(page) for page in pages] == [3, 3, 1]
    ids = [p["id"] for page in pages for p in page]
    assert len(ids) == len(set(ids)) == 7
    assert ids == [str(p.id) for p in reversed(created)]


def test_it_pages_without_repeats_when_rows_are_added_meanwhile(orch):
    old = [PipelineFactory() for _ in range(4)]
    first = orch.get("/api/v1/pipelines?limit=2")
    PipelineFactory.create_batch(3)  # newer rows must not shift the next page
    second = orch.get(links(first)["next"])
    ids = [p["id"] for p in first.json() + second.json()]
    assert ids == [str(p.id) for p in reversed(old)]


def test_the_next_page_link_has_a_prev_link_back(orch):
    PipelineFactory.create_batch(3)
    first = orch.get("/api/v1/pipelines?limit=2")
    second = orch.get(links(first)["next"])
    assert "next" not in links(second)
    back = orch.get(links(second)["prev"])
    assert [p["id"] for p in back.json()] == [p["id"] for p in first.json()]


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "1.5", "1e3", "%00", "99999999999999999999x"])
def test_it_rejects_a_bad_limit(orch, limit):
    assert_field_error(orch.get(f"/api/v1/pipelines?limit={limit}"), "limit")


def test_it_clamps_limit_to_1000(orch):
    Pipeline.objects.bulk_create(Pipeline(name=f"p{i}") for i in range(1001))
    response = orch.get("/api/v1/pipelines?limit=5000")
    assert response.status_code == 200
    assert len(response.json()) == 1000
    assert "next" in links(response)
    assert parse_qs(urlsplit(links(response)["next"]).query)["limit"] == ["5000"]


def test_it_uses_a_default_page_size(orch):
    Pipeline.objects.bulk_create(Pipeline(name=f"p{i}") for i in range(101))
    response = orch.get("/api/v1/pipelines")
    assert len(response.json()) == 100
    assert "next" in links(response)


def test_it_rejects_a_garbage_cursor(orch):
    assert_field_error(orch.get("/api/v1/pipelines?cursor=garbage"), "cursor")


def test_it_filters_pipelines_by_status(orch):
    active = PipelineFactory()
    paused = PipelineFactory(status="paused")
    assert [p["id"] for p in orch.get("/api/v1/pipelines?status=paused").json()] == [str(paused.id)]
    assert [p["id"] for p in orch.get("/api/v1/pipelines?status=active").json()] == [str(active.id)]


def test_it_rejects_an_unknown_pipeline_status_filter(orch):
    assert_field_error(orch.get("/api/v1/pipelines?status=bogus"), "status")


def test_it_retrieves_a_pipeline(orch):
    pipeline = PipelineFactory(description="d", metadata={"a": "b"})
    body = orch.get(f"/api/v1/pipelines/{pipeline.id}").json()
    assert body["id"] == str(pipeline.id)
    assert body["name"] == pipeline.name
    assert body["description"] == "d"
    assert body["metadata"] == {"a": "b"}
    assert set(body) >= {"id", "name", "description", "status", "created_at", "updated_at"}


def test_it_replaces_a_pipeline_with_put(orch):
    pipeline = PipelineFactory(description="old")
    response = orch.put(
        f"/api/v1/pipelines/{pipeline.id}", {"name": "renamed", "status": "paused"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "renamed"
    assert response.json()["status"] == "paused"
    pipeline.refresh_from_db()
    assert (pipeline.name, pipeline.status) == ("renamed", "paused")


def test_put_requires_the_name(orch):
    pipeline = PipelineFactory()
    assert_field_error(
        orch.put(f"/api/v1/pipelines/{pipeline.id}", {"status": "paused"}, format="json"), "name"
    )


def test_it_patches_a_pipeline(orch):
    pipeline = PipelineFactory(name="keep", description="old")
    before = pipeline.updated_at
    response = orch.patch(f"/api/v1/pipelines/{pipeline.id}", {"description": "new"}, format="json")
    assert response.status_code == 200
    assert response.json()["name"] == "keep"
    assert response.json()["description"] == "new"
    pipeline.refresh_from_db()
    assert pipeline.description == "new"
    assert pipeline.updated_at > before
    assert pipeline.created_at < pipeline.updated_at


def test_patch_cannot_change_the_id_or_created_at(orch):
    pipeline = PipelineFactory()
    response = orch.patch(
        f"/api/v1/pipelines/{pipeline.id}",
        {"id": str(uuid.uuid4()), "created_at": "2000-01-01T00:00:00Z"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["id"] == str(pipeline.id)
    assert not response.json()["created_at"].startswith("2000")


def test_patch_validates_the_pipeline(orch):
    pipeline = PipelineFactory()
    assert_field_error(
        orch.patch(f"/api/v1/pipelines/{pipeline.id}", {"status": "gone"}, format="json"),
        "status",
    )


def test_it_deletes_a_pipeline_and_its_jobs(orch):
    job = JobFactory()
    response = orch.delete(f"/api/v1/pipelines/{job.pipeline_id}")
    assert response.status_code == 204
    assert not Pipeline.objects.filter(pk=job.pipeline_id).exists()
    assert not Job.objects.filter(pk=job.pk).exists()
    assert orch.get(f"/api/v1/pipelines/{job.pipeline_id}").status_code == 404


@pytest.mark.parametrize("pk", [str(uuid.uuid4()), "not-a-uuid", "123", "%00"])
@pytest.mark.parametrize("resource", ["pipelines", "jobs"])
def test_it_returns_404_for_unknown_or_malformed_ids(orch, resource, pk):
    url = f"/api/v1/{resource}/{pk}"
    for response in (
        orch.get(url),
        orch.patch(url, {"name": "x"}, format="json"),
        orch.put(url, {"name": "x"}, format="json"),
        orch.delete(url),
    ):
        assert response.status_code == 404, (response.request, response.content)
        assert response.json()["error"] == "not_found"


# -- jobs --------------------------------------------------------------------------


def test_it_creates_a_job(orch):
    pipeline = PipelineFactory()
    response = orch.post(
        "/api/v1/jobs",
        {
            "pipeline_id": str(pipeline.id),
            "name": "build",
            "command": "make",
            "type": "sh",
            "worker_type": "rust",
            "labels": {"team": "core"},
            "env": {"CI": "1"},
            "timeout_seconds": 60,
            "max_retries": 2,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert uuid.UUID(body["id"])
    assert body["pipeline_id"] == str(pipeline.id)
    assert body["name"] == "build"
    assert body["command"] == "make"
    assert body["type"] == "sh"
    assert body["worker_type"] == "rust"
    assert body["labels"] == {"team": "core"}
    assert body["env"] == {"CI": "1"}
    assert body["timeout_seconds"] == 60
    assert body["max_retries"] == 2
    assert body["status"] == "pending"
    assert body["depends_on"] == []
    assert body["created_at"]
    job = Job.objects.get(pk=body["id"])
    assert (job.pipeline_id, job.command) == (pipeline.id, "make")


def test_job_name_and_command_are_optional(orch):
    pipeline = PipelineFactory()
    response = orch.post("/api/v1/jobs", {"pipeline_id": str(pipeline.id)}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == ""
    assert body["command"] == ""
    assert body["type"] == "bash"
    assert body["timeout_seconds"] is None
    assert body["status"] == "pending"


@pytest.mark.parametrize(
    "pipeline_id",
    [None, "", "not-a-uuid", str(uuid.uuid4()), 12, ["x"], {"id": "x"}],
    ids=["null", "empty", "malformed", "unknown", "int", "list", "object"],
)
def test_a_job_needs_an_existing_pipeline(orch, pipeline_id):
    response = orch.post("/api/v1/jobs", {"pipeline_id": pipeline_id}, format="json")
    assert_field_error(response, "pipeline_id")
    assert not Job.objects.exists()


def test_a_job_without_pipeline_id_is_rejected(orch):
    assert_field_error(orch.post("/api/v1/jobs", {"name": "x"}, format="json"), "pipeline_id")


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"type": "powershell"}, "type"),
        ({"worker_type": "has space"}, "worker_type"),
        ({"worker_type": "-leading"}, "worker_type"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": 7 * 24 * 3600 + 1}, "timeout_seconds"),
        ({"max_retries": 101}, "max_retries"),
        ({"max_retries": -1}, "max_retries"),
        ({"retry_backoff": 0.5}, "retry_backoff"),
        ({"retry_backoff": "NaN"}, "retry_backoff"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"env": {"OK": 1}}, "env"),
        ({"env": {"TRAILING_NEWLINE\n": "x"}}, "env"),
        ({"env": ["A=1"]}, "env"),
        ({"secret_env": {"BAD-NAME": "x"}}, "secret_env"),
        ({"labels": {"a": ["b"]}}, "labels"),
        ({"labels": {f"k{i}": "v" for i in range(201)}}, "labels"),
        ({"name": "n" * 201}, "name"),
    ],
)
def test_it_rejects_an_invalid_job(orch, extra, field):
    pipeline = PipelineFactory()
    response = orch.post("/api/v1/jobs", {"pipeline_id": str(pipeline.id), **extra}, format="json")
    assert_field_error(response, field)
    assert not Job.objects.exists()


def test_it_retrieves_a_job(orch):
    job = JobFactory(command="make test", labels={"a": "b"})
    body = orch.get(f"/api/v1/jobs/{job.id}").json()
    assert body["id"] == str(job.id)
    assert body["pipeline_id"] == str(job.pipeline_id)
    assert body["command"] == "make test"
    assert body["labels"] == {"a": "b"}
    assert body["status"] == "pending"


def test_it_reports_a_job_status(orch):
    job = JobFactory()
    response = orch.get(f"/api/v1/jobs/{job.id}/status")
    assert response.status_code == 200
    assert response.json() == {"id": str(job.id), "status": "pending"}


def test_the_job_status_follows_its_latest_execution(orch):
    job = JobFactory()
    execution_enqueue(job=job)
    assert orch.get(f"/api/v1/jobs/{job.id}/status").json()["status"] == "queued"
    execution_enqueue(job=JobFactory(pipeline=job.pipeline, command=""), command="")
    assert orch.get(f"/api/v1/jobs/{job.id}/status").json()["status"] == "queued"
    execution_enqueue(job=job, command="")  # a no-op run succeeds at once
    assert orch.get(f"/api/v1/jobs/{job.id}/status").json()["status"] == "succeeded"


@pytest.mark.parametrize("pk", [str(uuid.uuid4()), "nope"])
def test_job_status_of_an_unknown_job_is_404(orch, pk):
    assert orch.get(f"/api/v1/jobs/{pk}/status").status_code == 404


def test_it_lists_jobs_as_a_bare_array(orch):
    jobs = JobFactory.create_batch(3)
    response = orch.get("/api/v1/jobs")
    assert response.status_code == 200
    assert [j["id"] for j in response.json()] == [str(j.id) for j in reversed(jobs)]


def test_it_paginates_jobs(orch):
    jobs = JobFactory.create_batch(5)
    ids = [j["id"] for page in walk_pages(orch, "/api/v1/jobs?limit=2") for j in page]
    assert ids == [str(j.id) for j in reversed(jobs)]


def test_it_filters_jobs(orch):
    pipeline = PipelineFactory()
    in_pipeline = JobFactory(pipeline=pipeline, type="python")
    other = JobFactory(type="sh")
    Job.objects.filter(pk=other.pk).update(status="failed")

    def ids(query):
        response = orch.get(f"/api/v1/jobs?{query}")
        assert response.status_code == 200
        return [j["id"] for j in response.json()]

    assert ids(f"pipeline_id={pipeline.id}") == [str(in_pipeline.id)]
    assert ids("type=sh") == [str(other.id)]
    assert ids("type=python") == [str(in_pipeline.id)]
    assert ids("status=failed") == [str(other.id)]
    assert ids("status=pending") == [str(in_pipeline.id)]
    assert ids(f"pipeline_id={uuid.uuid4()}") == []
    assert ids(f"pipeline_id={pipeline.id}&type=sh") == []


@pytest.mark.parametrize(
    "query, field",
    [
        ("pipeline_id=notauuid", "pipeline_id"),
        ("status=bogus", "status"),
        ("type=ruby", "type"),
        ("status=%00", "status"),
        ("worker_type=%00", "worker_type"),
    ],
)
def test_it_rejects_bad_job_filters(orch, query, field):
    assert_field_error(orch.get(f"/api/v1/jobs?{query}"), field)


def test_it_replaces_a_job_with_put(orch):
    job = JobFactory(command="old", timeout_seconds=5, labels={"a": "b"})
    response = orch.put(
        f"/api/v1/jobs/{job.id}",
        {"pipeline_id": str(job.pipeline_id), "name": "new", "command": "new"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["command"]) == ("new", "new")
    job.refresh_from_db()
    assert job.command == "new"


def test_put_requires_the_pipeline_id(orch):
    job = JobFactory()
    assert_field_error(
        orch.put(f"/api/v1/jobs/{job.id}", {"command": "x"}, format="json"), "pipeline_id"
    )


def test_it_patches_a_job(orch):
    job = JobFactory(name="keep", command="old", env={"A": "1"})
    response = orch.patch(
        f"/api/v1/jobs/{job.id}", {"command": "new", "timeout_seconds": 30}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["name"] == "keep"
    assert body["command"] == "new"
    assert body["timeout_seconds"] == 30
    assert body["env"] == {"A": "1"}
    job.refresh_from_db()
    assert (job.command, job.timeout_seconds) == ("new", 30)


def test_patch_validates_the_job(orch):
    job = JobFactory()
    assert_field_error(
        orch.patch(f"/api/v1/jobs/{job.id}", {"type": "cobol"}, format="json"), "type"
    )
    assert_field_error(
        orch.patch(f"/api/v1/jobs/{job.id}", {"pipeline_id": str(uuid.uuid4())}, format="json"),
        "pipeline_id",
    )


def test_patch_cannot_set_the_job_status(orch):
    job = JobFactory()
    response = orch.patch(f"/api/v1/jobs/{job.id}", {"status": "succeeded"}, format="json")
    assert response.status_code == 200
    job.refresh_from_db()
    assert job.status == "pending"


def test_it_moves_a_job_without_dependencies_to_another_pipeline(orch):
    job, target = JobFactory(), PipelineFactory()
    response = orch.patch(f"/api/v1/jobs/{job.id}", {"pipeline_id": str(target.id)}, format="json")
    assert response.status_code == 200
    assert response.json()["pipeline_id"] == str(target.id)


def test_a_job_with_dependencies_cannot_move_to_another_pipeline(orch):
    upstream = JobFactory()
    job = JobFactory(pipeline=upstream.pipeline)
    job.depends_on.set([upstream])
    target = PipelineFactory()
    for moving in (job, upstream):
        response = orch.patch(
            f"/api/v1/jobs/{moving.id}", {"pipeline_id": str(target.id)}, format="json"
        )
        assert_field_error(response, "pipeline_id")
        moving.refresh_from_db()
        assert moving.pipeline_id == upstream.pipeline_id


def test_it_deletes_a_job(orch):
    job = JobFactory()
    assert orch.delete(f"/api/v1/jobs/{job.id}").status_code == 204
    assert not Job.objects.filter(pk=job.pk).exists()
    assert orch.get(f"/api/v1/jobs/{job.id}").status_code == 404


def test_deleting_a_scheduled_job_is_refused_naming_its_schedules(orch):
    schedule = ScheduleFactory(cron="0 3 * * *")
    job = schedule.job
    response = orch.delete(f"/api/v1/jobs/{job.id}")
    assert response.status_code == 409
    body = response.json()
    assert str(schedule.id) in body["detail"] and "cascade=true" in body["detail"]
    assert body["fields"]["schedules"][0].startswith(str(schedule.id))
    assert Job.objects.filter(pk=job.pk).exists()

    pipeline_response = orch.delete(f"/api/v1/pipelines/{job.pipeline_id}")
    assert pipeline_response.status_code == 409
    assert str(schedule.id) in pipeline_response.json()["detail"]


def test_cascade_deletes_the_schedules_and_keeps_the_executions(orch):
    schedule = ScheduleFactory(cron="0 3 * * *")
    job = schedule.job
    execution = execution_enqueue(job=job)
    assert orch.delete(f"/api/v1/jobs/{job.id}?cascade=true").status_code == 204
    assert not Job.objects.filter(pk=job.pk).exists()
    assert not Schedule.objects.filter(pk=schedule.pk).exists()
    execution.refresh_from_db()
    assert execution.job_id is None  # history without its job


def test_cascade_must_be_a_boolean(orch):
    job = JobFactory()
    response = orch.delete(f"/api/v1/jobs/{job.id}?cascade=maybe")
    assert response.status_code == 400
    assert "cascade" in response.json()["fields"]


def test_deleting_an_upstream_job_drops_the_dependency(orch):
    upstream = JobFactory()
    job = JobFactory(pipeline=upstream.pipeline)
    job.depends_on.set([upstream])
    assert orch.delete(f"/api/v1/jobs/{upstream.id}").status_code == 204
    assert orch.get(f"/api/v1/jobs/{job.id}").json()["depends_on"] == []


# -- depends_on --------------------------------------------------------------------


def test_a_job_depends_on_jobs_of_its_pipeline(orch):
    a = JobFactory()
    b = JobFactory(pipeline=a.pipeline)
    response = orch.post(
        "/api/v1/jobs",
        {"pipeline_id": str(a.pipeline_id), "depends_on": [str(a.id), str(b.id)]},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert sorted(response.json()["depends_on"]) == sorted([str(a.id), str(b.id)])
    job = Job.objects.get(pk=response.json()["id"])
    assert set(job.depends_on.all()) == {a, b}
    assert orch.get(f"/api/v1/jobs/{job.id}").json()["depends_on"] == response.json()["depends_on"]


def test_a_job_cannot_depend_on_a_job_of_another_pipeline(orch):
    other = JobFactory()
    pipeline = PipelineFactory()
    response = orch.post(
        "/api/v1/jobs",
        {"pipeline_id": str(pipeline.id), "depends_on": [str(other.id)]},
        format="json",
    )
    assert_field_error(response, "depends_on")
    assert not Job.objects.filter(pipeline=pipeline).exists()


@pytest.mark.parametrize(
    "depends_on", [[str(uuid.uuid4())], ["nope"], "not-a-list", [None], [{"id": "x"}]]
)
def test_depends_on_must_name_existing_jobs(orch, depends_on):
    pipeline = PipelineFactory()
    response = orch.post(
        "/api/v1/jobs", {"pipeline_id": str(pipeline.id), "depends_on": depends_on}, format="json"
    )
    assert_field_error(response, "depends_on")


def test_a_job_cannot_depend_on_itself(orch):
    job = JobFactory()
    response = orch.patch(f"/api/v1/jobs/{job.id}", {"depends_on": [str(job.id)]}, format="json")
    assert_field_error(response, "depends_on")
    assert not job.depends_on.exists()


@pytest.mark.parametrize("length", [2, 3, 5])
def test_depends_on_cannot_form_a_cycle(orch, length):
    pipeline = PipelineFactory()
    chain = JobFactory.create_batch(length, pipeline=pipeline)
    for downstream, upstream in zip(chain[1:], chain, strict=False):
        downstream.depends_on.set([upstream])
    # chain[-1] -> ... -> chain[0]; making chain[0] depend on chain[-1] closes the loop.
    response = orch.patch(
        f"/api/v1/jobs/{chain[0].id}", {"depends_on": [str(chain[-1].id)]}, format="json"
    )
    assert_field_error(response, "depends_on")
    assert not chain[0].depends_on.exists()


def test_a_diamond_is_not_a_cycle(orch):
    pipeline = PipelineFactory()
    top, left, right, bottom = JobFactory.create_batch(4, pipeline=pipeline)
    left.depends_on.set([top])
    right.depends_on.set([top])
    response = orch.patch(
        f"/api/v1/jobs/{bottom.id}",
        {"depends_on": [str(left.id), str(right.id)]},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert sorted(response.json()["depends_on"]) == sorted([str(left.id), str(right.id)])


def test_patch_replaces_and_clears_dependencies(orch):
    a = JobFactory()
    b, job = JobFactory.create_batch(2, pipeline=a.pipeline)
    job.depends_on.set([a])
    response = orch.patch(f"/api/v1/jobs/{job.id}", {"depends_on": [str(b.id)]}, format="json")
    assert response.json()["depends_on"] == [str(b.id)]
    response = orch.patch(f"/api/v1/jobs/{job.id}", {"depends_on": []}, format="json")
    assert response.json()["depends_on"] == []
    assert not job.depends_on.exists()


def test_patch_without_depends_on_keeps_dependencies(orch):
    a = JobFactory()
    job = JobFactory(pipeline=a.pipeline)
    job.depends_on.set([a])
    response = orch.patch(f"/api/v1/jobs/{job.id}", {"name": "renamed"}, format="json")
    assert response.json()["depends_on"] == [str(a.id)]


# -- secrets -----------------------------------------------------------------------


def test_secret_env_values_are_masked_and_never_echoed(orch):
    pipeline = PipelineFactory()
    response = orch.post(
        "/api/v1/jobs",
        {"pipeline_id": str(pipeline.id), "secret_env": {"TOKEN": SECRET}},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["secret_env"] == {"TOKEN": "********"}
    assert SECRET not in response.content.decode()
    job_id = response.json()["id"]
    assert stored_secrets(Job.objects.get(pk=job_id)) == {"TOKEN": SECRET}

    for read in (
        orch.get(f"/api/v1/jobs/{job_id}"),
        orch.get("/api/v1/jobs"),
        orch.patch(f"/api/v1/jobs/{job_id}", {"command": "env"}, format="json"),
        orch.get(f"/api/v1/jobs/{job_id}", HTTP_ACCEPT="text/html"),
    ):
        assert read.status_code == 200
        assert SECRET not in read.content.decode()
    assert stored_secrets(Job.objects.get(pk=job_id)) == {"TOKEN": SECRET}


def test_patch_replaces_secret_env(orch):
    job = JobFactory(secret_env={"OLD": "old-value-1"})
    response = orch.patch(f"/api/v1/jobs/{job.id}", {"secret_env": {"NEW": SECRET}}, format="json")
    assert response.json()["secret_env"] == {"NEW": "********"}
    assert SECRET not in response.content.decode()
    job.refresh_from_db()
    assert stored_secrets(job) == {"NEW": SECRET}


# -- query counts ------------------------------------------------------------------


def _count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_listing_jobs_uses_a_constant_number_of_queries(orch, django_assert_max_num_queries):
    orch.get("/api/v1/jobs")  # first use of the token records last_used_at
    pipeline = PipelineFactory()
    base = JobFactory.create_batch(2, pipeline=pipeline)
    for job in JobFactory.create_batch(3, pipeline=pipeline):
        job.depends_on.set(base)
    few = _count_queries(orch, "/api/v1/jobs")
    for job in JobFactory.create_batch(45, pipeline=pipeline):
        job.depends_on.set(base)
    many = _count_queries(orch, "/api/v1/jobs")
    assert few == many
    with django_assert_max_num_queries(3):
        response = orch.get("/api/v1/jobs")
    assert len(response.json()) == 50
    assert sum(len(j["depends_on"]) for j in response.json()) == 48 * 2


def test_listing_pipelines_uses_a_constant_number_of_queries(orch, django_assert_max_num_queries):
    orch.get("/api/v1/pipelines")
    PipelineFactory.create_batch(50)
    with django_assert_max_num_queries(2):
        response = orch.get("/api/v1/pipelines")
    assert len(response.json()) == 50


# -- concurrency -------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_dependency_changes_cannot_close_a_cycle(orch):
    a = JobFactory()
    b = JobFactory(pipeline=a.pipeline)
    result = {}

    def make_b_depend_on_a():
        try:
            result["response"] = orch.patch(
                f"/api/v1/jobs/{b.id}", {"depends_on": [str(a.id)]}, format="json"
            )
        finally:
            connection.close()

    # One operator makes a depend on b; before that commits, another makes b depend on a.
    with transaction.atomic():
        services.job_update(job=a, depends_on=[b])
        other = threading.Thread(target=make_b_depend_on_a)
        other.start()
        other.join(timeout=1.0)  # unserialized, the second update would be done by now
    other.join(timeout=30)
    assert not other.is_alive()
    assert_field_error(result["response"], "depends_on")
    assert list(a.depends_on.all()) == [b]
    assert not b.depends_on.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_job_cannot_move_away_while_another_comes_to_depend_on_it(orch):
    upstream = JobFactory()
    downstream = JobFactory(pipeline=upstream.pipeline)
    target = PipelineFactory()
    result = {}

    def move_upstream():
        try:
            result["response"] = orch.patch(
                f"/api/v1/jobs/{upstream.id}", {"pipeline_id": str(target.id)}, format="json"
            )
        finally:
            connection.close()

    with transaction.atomic():
        services.job_update(job=downstream, depends_on=[upstream])
        other = threading.Thread(target=move_upstream)
        other.start()
        other.join(timeout=1.0)
    other.join(timeout=30)
    assert not other.is_alive()
    assert_field_error(result["response"], "pipeline_id")
    upstream.refresh_from_db()
    assert upstream.pipeline_id == downstream.pipeline_id
