"""The run API (orchestrator, :8080): start, list, filter, read, cancel and retry runs,
with the same conventions as the rest (bare arrays, Link pagination, one error shape,
model permissions) and pipeline_run_id in the worker manager's executions API."""

import uuid

import pytest

from accounts.roles import OPERATORS, VIEWERS
from pipelines import services
from tests.conftest import client_for
from tests.factories import JobFactory, PipelineFactory, UserFactory
from tests.orchestrator.test_api import assert_field_error, links, walk_pages
from tests.pipelines.test_runs import dag, run_until_done

pytestmark = pytest.mark.django_db


def role_client(group: str):
    from django.contrib.auth.models import Group

    user = UserFactory()
    user.groups.add(Group.objects.get(name=group))
    return client_for("orchestrator", user)


def test_run_starts_a_run_with_every_job_and_its_state(orch):
    pipeline, jobs = dag(a="true", b=("true", ["a"]))
    response = orch.post(f"/api/v1/pipelines/{pipeline.pk}/run", {}, format="json")
    assert response.status_code == 201, response.content
    run = response.json()
    assert run["pipeline_id"] == str(pipeline.pk)
    assert run["status"] == "queued" and run["trigger"] == "api"
    states = {j["name"]: (j["state"], j["needs"]) for j in run["jobs"]}
    assert states == {"a": ("queued", []), "b": ("pending", [str(jobs["a"].pk)])}
    assert all(j["execution_id"] and j["attempt"] == 1 for j in run["jobs"])


def test_run_takes_env_and_a_subset(orch):
    pipeline, jobs = dag(a="true", b=("true", ["a"]), other="true")
    response = orch.post(
        f"/api/v1/pipelines/{pipeline.pk}/run",
        {"env": {"TARGET": "staging"}, "jobs": [str(jobs["b"].pk)]},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["env"] == {"TARGET": "staging"}
    assert sorted(j["name"] for j in body["jobs"]) == ["a", "b"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"env": {"1BAD": "x"}}, "env"),
        ({"env": "not a mapping"}, "env"),
        ({"jobs": ["not-a-uuid"]}, "jobs"),
        ({"jobs": [str(uuid.uuid4())]}, "jobs"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_run_input_is_a_400_naming_the_field(orch, body, field):
    pipeline, _ = dag(a="true")
    response = orch.post(f"/api/v1/pipelines/{pipeline.pk}/run", body, format="json")
    assert_field_error(response, field)


def test_jobs_of_another_pipeline_are_refused(orch):
    pipeline, _ = dag(a="true")
    stranger = JobFactory()
    response = orch.post(
        f"/api/v1/pipelines/{pipeline.pk}/run", {"jobs": [str(stranger.pk)]}, format="json"
    )
    assert_field_error(response, "jobs")


def test_an_archived_pipeline_is_a_409_with_a_clear_message(orch):
    pipeline = PipelineFactory(status="archived")
    response = orch.post(f"/api/v1/pipelines/{pipeline.pk}/run", {}, format="json")
    assert response.status_code == 409
    assert "archived" in response.json()["detail"]


def test_unknown_ids_are_404(orch):
    assert orch.post(f"/api/v1/pipelines/{uuid.uuid4()}/run", {}).status_code == 404
    assert orch.get(f"/api/v1/pipelines/{uuid.uuid4()}/runs").status_code == 404
    assert orch.get(f"/api/v1/runs/{uuid.uuid4()}").status_code == 404
    assert orch.post(f"/api/v1/runs/{uuid.uuid4()}/cancel").status_code == 404
    assert orch.get("/api/v1/runs/not-a-uuid").status_code == 404


def test_running_needs_the_run_permission_and_reading_the_view_one(db):
    pipeline, _ = dag(a="true")
    viewer, operator = role_client(VIEWERS), role_client(OPERATORS)
    assert viewer.post(f"/api/v1/pipelines/{pipeline.pk}/run", {}).status_code == 403
    response = operator.post(f"/api/v1/pipelines/{pipeline.pk}/run", {}, format="json")
    assert response.status_code == 201
    run_id = response.json()["id"]
    assert viewer.get(f"/api/v1/runs/{run_id}").status_code == 200
    assert viewer.get(f"/api/v1/pipelines/{pipeline.pk}/runs").status_code == 200
    assert viewer.post(f"/api/v1/runs/{run_id}/cancel").status_code == 403
    assert operator.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
    assert client_for("orchestrator").get("/api/v1/runs").status_code in (401, 403)


def test_lists_are_bare_arrays_paged_by_link_and_filtered(orch):
    pipeline, _ = dag(a="true")
    other, _ = dag(b="true")
    for _ in range(3):
        services.pipeline_run_start(pipeline=pipeline)
    cancelled = services.pipeline_run_start(pipeline=other, trigger="cli")
    services.pipeline_run_cancel(run=cancelled)

    pages = walk_pages(orch, "/api/v1/runs?limit=2")
    assert [len(p) for p in pages] == [2, 2]
    assert all(isinstance(p, list) for p in pages)
    everything = [r["id"] for p in pages for r in p]
    assert everything == sorted(everything, reverse=True)  # newest first
    assert all(r["jobs"] == [] for p in pages for r in p)  # a list shows runs only

    def ids(url):
        response = orch.get(url)
        assert response.status_code == 200, response.content
        return {r["id"] for r in response.json()}

    assert ids(f"/api/v1/runs?pipeline_id={other.pk}") == {str(cancelled.pk)}
    assert ids("/api/v1/runs?status=cancelled") == {str(cancelled.pk)}
    assert ids("/api/v1/runs?trigger=cli") == {str(cancelled.pk)}
    assert len(ids("/api/v1/runs?status=queued")) == 3
    assert len(ids(f"/api/v1/pipelines/{pipeline.pk}/runs")) == 3
    assert_field_error(orch.get("/api/v1/runs?status=sideways"), "status")
    assert "next" in links(orch.get(f"/api/v1/pipelines/{pipeline.pk}/runs?limit=1"))


def test_cancel_and_retry_answer_409_when_they_cannot(orch, make_agent):
    pipeline, _ = dag(a="true")
    run = run_until_done(make_agent(), services.pipeline_run_start(pipeline=pipeline))
    assert run.status == "succeeded"
    response = orch.post(f"/api/v1/runs/{run.pk}/cancel")
    assert response.status_code == 409 and "succeeded" in response.json()["detail"]
    response = orch.post(f"/api/v1/runs/{run.pk}/retry")
    assert response.status_code == 409


def test_cancel_then_retry_through_the_api(orch, make_agent):
    pipeline, jobs = dag(a="true", b=("true", ["a"]))
    run = services.pipeline_run_start(pipeline=pipeline)
    response = orch.post(f"/api/v1/runs/{run.pk}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert {j["state"] for j in response.json()["jobs"]} == {"cancelled"}
    response = orch.post(f"/api/v1/runs/{run.pk}/retry")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "running"
    run = run_until_done(make_agent(), run)
    assert run.status == "succeeded"
    detail = orch.get(f"/api/v1/runs/{run.pk}").json()
    assert {j["state"] for j in detail["jobs"]} == {"succeeded"}
    assert {j["attempt"] for j in detail["jobs"]} == {2}


def test_outputs_are_shown_for_each_job(orch, make_agent):
    pipeline, _ = dag(v=('echo "V=7" >> "$HODEI_OUTPUT"', []))
    run = run_until_done(make_agent(), services.pipeline_run_start(pipeline=pipeline))
    (job,) = orch.get(f"/api/v1/runs/{run.pk}").json()["jobs"]
    assert job["outputs"] == {"V": "7"} and job["state"] == "succeeded"
    assert job["started_at"] and job["finished_at"]


def test_executions_carry_and_filter_by_pipeline_run_id(wm):
    pipeline, _ = dag(a="true", b=("true", ["a"]))
    run = services.pipeline_run_start(pipeline=pipeline)
    services.pipeline_run_start(pipeline=pipeline)
    response = wm.get(f"/api/v1/executions?pipeline_run_id={run.pk}")
    assert response.status_code == 200
    body = response.json()
    assert len(body) == 2 and {e["pipeline_run_id"] for e in body} == {str(run.pk)}
    one = wm.get(f"/api/v1/executions/{body[0]['id']}").json()
    assert one["pipeline_run_id"] == str(run.pk)


def test_the_openapi_document_describes_the_run_endpoints(orch):
    paths = orch.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/pipelines/{id}/run",
        "/api/v1/pipelines/{id}/runs",
        "/api/v1/runs",
        "/api/v1/runs/{id}",
        "/api/v1/runs/{id}/cancel",
        "/api/v1/runs/{id}/retry",
        "/api/v1/pipelines/{id}/definition",
        "/api/v1/pipelines/apply",
    ):
        assert path in paths, path
