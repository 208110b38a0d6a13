"""Pipelines as code: documents in YAML or JSON, validated whole, applied atomically (jobs
matched by name keep their ids), exported in a canonical form; the API endpoints and the
applypipeline / runpipeline commands."""

import io
import json

import pytest
import yaml
from django.core.management import CommandError, call_command

from hodei.exceptions import Conflict, InvalidInput
from orchestrator import definitions
from orchestrator.models import Job, Pipeline
from pipelines.models import PipelineRun
from tests.factories import ScheduleFactory

pytestmark = pytest.mark.django_db

DOCUMENT = """
name: release
description: Build and ship
jobs:
  - name: lint
    command: make lint
    allow_failure: true
  - name: build
    command: make build
    timeout_seconds: 600
    env: {MODE: release}
  - name: test
    command: make test
    needs: [build]
    max_retries: 2
  - name: ship
    command: make ship
    needs: [lint, test]
"""


def apply_text(text: str, **kwargs):
    return definitions.apply(definitions.parse(text), **kwargs)


def ids(pipeline: Pipeline) -> dict[str, str]:
    return {j.name: str(j.pk) for j in pipeline.jobs.all()}


def test_a_document_creates_the_pipeline_with_its_jobs_and_needs():
    result = apply_text(DOCUMENT)
    pipeline = result.pipeline
    assert result.created and sorted(result.added) == ["build", "lint", "ship", "test"]
    assert pipeline.name == "release" and pipeline.description == "Build and ship"
    jobs = {j.name: j for j in pipeline.jobs.all()}
    assert {j.name for j in jobs["ship"].depends_on.all()} == {"lint", "test"}
    assert jobs["lint"].allow_failure and jobs["test"].max_retries == 2
    assert jobs["build"].env == {"MODE": "release"} and jobs["build"].timeout_seconds == 600


def test_export_apply_export_is_the_identity():
    pipeline = apply_text(DOCUMENT).pipeline
    first = definitions.export(pipeline)
    again = apply_text(definitions.to_yaml(first))
    assert again.is_noop and not again.created
    assert definitions.export(pipeline) == first
    assert definitions.to_yaml(definitions.export(pipeline)) == definitions.to_yaml(first)
    # and through JSON
    assert apply_text(definitions.to_json(first)).is_noop


def test_applying_changes_adds_changes_removes_and_keeps_ids():
    pipeline = apply_text(DOCUMENT).pipeline
    before = ids(pipeline)
    document = yaml.safe_load(DOCUMENT)
    document["jobs"] = [j for j in document["jobs"] if j["name"] != "lint"]
    document["jobs"][0]["command"] = "make build-fast"  # build changes
    document["jobs"].append({"name": "docs", "command": "make docs", "needs": ["build"]})
    document["jobs"][2]["needs"] = ["test"]  # ship no longer needs lint
    result = definitions.apply(document)
    assert result.added == ["docs"] and result.removed == ["lint"]
    assert result.changed == {"build": ["command"], "ship": ["needs"]}
    after = ids(pipeline)
    assert after["build"] == before["build"] and after["test"] == before["test"]
    assert after["ship"] == before["ship"] and "lint" not in after
    assert Job.objects.get(pk=after["build"]).command == "make build-fast"


def test_a_dry_run_says_what_would_change_and_changes_nothing():
    pipeline = apply_text(DOCUMENT).pipeline
    document = yaml.safe_load(DOCUMENT)
    document["jobs"][1]["timeout_seconds"] = 60
    plan = definitions.plan(document, pipeline=pipeline)
    assert plan.changed == {"build": ["timeout_seconds"]} and not plan.added
    assert pipeline.jobs.get(name="build").timeout_seconds == 600


@pytest.mark.parametrize(
    "edit, field, words",
    [
        (lambda d: d["jobs"][1].update(timeout_seconds=-5), "jobs.build.timeout_seconds", ""),
        (lambda d: d["jobs"][2].update(needs=["nope"]), "jobs.test.needs", "nope"),
        (lambda d: d["jobs"][0].update(colour="red"), "jobs.lint.colour", "Unknown"),
        (lambda d: d["jobs"].append({"name": "lint", "command": "x"}), "jobs.lint.name", "Two"),
        (lambda d: d["jobs"][1].update(needs=["ship"]), "jobs", "build"),  # a cycle
        (lambda d: d.pop("name"), "name", ""),
        (lambda d: d["jobs"][0].update(secret_env=["TOKEN"]), "jobs.lint.secret_env", "TOKEN"),
    ],
)
def test_every_error_names_the_job_and_field_and_nothing_changes(edit, field, words):
    document = yaml.safe_load(DOCUMENT)
    edit(document)
    with pytest.raises(InvalidInput) as caught:
        definitions.apply(document)
    fields = caught.value.fields
    matching = [k for k in fields if k.startswith(field)]
    assert matching, fields
    assert words in " ".join(m for k in matching for m in fields[k])
    assert not Pipeline.objects.filter(name="release").exists()


def test_a_cycle_names_the_jobs_in_it():
    document = {
        "name": "loop",
        "jobs": [
            {"name": "a", "command": "true", "needs": ["c"]},
            {"name": "b", "command": "true", "needs": ["a"]},
            {"name": "c", "command": "true", "needs": ["b"]},
            {"name": "d", "command": "true"},
        ],
    }
    with pytest.raises(InvalidInput) as caught:
        definitions.apply(document)
    text = json.dumps(caught.value.fields)
    assert all(name in text for name in "abc") and "cycle" in text.lower()
    assert '"d' not in text


def test_removing_a_scheduled_job_is_refused_whole():
    pipeline = apply_text(DOCUMENT).pipeline
    ScheduleFactory(job=pipeline.jobs.get(name="lint"))
    document = yaml.safe_load(DOCUMENT)
    document["jobs"] = [j for j in document["jobs"] if j["name"] != "lint"]
    document["jobs"][0]["command"] = "changed"
    document["jobs"][2]["needs"] = ["test"]
    with pytest.raises(Conflict, match="schedules"):
        definitions.apply(document)
    assert pipeline.jobs.get(name="build").command == "make build"  # rolled back


# -- the API -----------------------------------------------------------------------


def test_get_definition_in_yaml_or_json(orch):
    pipeline = apply_text(DOCUMENT).pipeline
    url = f"/api/v1/pipelines/{pipeline.pk}/definition"
    as_yaml = orch.get(url, HTTP_ACCEPT="application/yaml")
    assert as_yaml.status_code == 200 and as_yaml["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.content) == definitions.export(pipeline)
    as_json = orch.get(url)
    assert as_json["Content-Type"].startswith("application/json")
    assert as_json.json() == definitions.export(pipeline)


def test_put_definition_applies_yaml_and_reports_changes(orch):
    pipeline = apply_text(DOCUMENT).pipeline
    text = DOCUMENT.replace("make test", "make test-all")
    url = f"/api/v1/pipelines/{pipeline.pk}/definition"
    dry = orch.put(url + "?dry_run=true", text, content_type="application/yaml")
    assert dry.status_code == 200, dry.content
    assert dry.json()["changed"] == {"test": ["command"]} and dry.json()["dry_run"]
    assert pipeline.jobs.get(name="test").command == "make test"
    done = orch.put(url, text, content_type="application/yaml")
    assert done.status_code == 200 and not done.json()["dry_run"]
    assert pipeline.jobs.get(name="test").command == "make test-all"


def test_apply_creates_by_name_then_updates(orch):
    created = orch.post("/api/v1/pipelines/apply", DOCUMENT, content_type="application/yaml")
    assert created.status_code == 200, created.content
    assert created.json()["created"] is True
    again = orch.post(
        "/api/v1/pipelines/apply", yaml.safe_load(DOCUMENT), format="json"
    )  # the same document in JSON: nothing to do
    assert again.status_code == 200
    assert again.json()["pipeline_id"] == created.json()["pipeline_id"]
    assert again.json() | {"pipeline_changes": []} == {
        **created.json(),
        "created": False,
        "added": [],
        "pipeline_changes": [],
    }
    assert again.json()["pipeline_changes"] == []
    assert Pipeline.objects.filter(name="release").count() == 1


def test_bad_documents_are_400s_naming_job_and_field(orch):
    bad = DOCUMENT.replace("max_retries: 2", "max_retries: lots")
    response = orch.post("/api/v1/pipelines/apply", bad, content_type="application/yaml")
    assert response.status_code == 400
    assert "jobs.test.max_retries" in response.json()["fields"]
    response = orch.post("/api/v1/pipelines/apply", "a: [", content_type="application/yaml")
    assert response.status_code == 400
    response = orch.post("/api/v1/pipelines/apply", "- a list", content_type="application/yaml")
    assert response.status_code == 400 and "document" in response.json()["fields"]
    assert not Pipeline.objects.exists()


# -- the commands -------------------------------------------------------------------


def test_applypipeline_prints_the_plan_and_applies(tmp_path):
    path = tmp_path / "release.yaml"
    path.write_text(DOCUMENT)
    out = io.StringIO()
    call_command("applypipeline", str(path), "--dry-run", stdout=out)
    assert "would be created" in out.getvalue() and "+ build" in out.getvalue()
    assert not Pipeline.objects.exists()
    out = io.StringIO()
    call_command("applypipeline", str(path), stdout=out)
    assert "created" in out.getvalue() and "4 job change(s) applied" in out.getvalue()
    path.write_text(DOCUMENT.replace("make ship", "make ship-it"))
    out = io.StringIO()
    call_command("applypipeline", str(path), stdout=out)
    assert "~ ship (command)" in out.getvalue()
    out = io.StringIO()
    call_command("applypipeline", str(path), stdout=out)
    assert "no change" in out.getvalue()


def test_applypipeline_errors_are_clear(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(DOCUMENT.replace("needs: [build]", "needs: [biuld]"))
    with pytest.raises(CommandError, match=r"jobs\.test\.needs.*biuld"):
        call_command("applypipeline", str(path))
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("applypipeline", str(tmp_path / "missing.yaml"))


def test_runpipeline_starts_a_run_by_name_with_env():
    apply_text(DOCUMENT)
    out = io.StringIO()
    call_command("runpipeline", "release", "--env", "TARGET=prod", stdout=out)
    run = PipelineRun.objects.get(pk=out.getvalue().strip())
    assert run.trigger == "cli" and run.env == {"TARGET": "prod"}
    with pytest.raises(CommandError, match="K=V"):
        call_command("runpipeline", "release", "--env", "oops")
    with pytest.raises(CommandError):
        call_command("runpipeline", "no-such-pipeline")
