"""docs/pipelines.md's worked example, as the docs show it: applied from the very YAML
block of the page and run with a real agent."""

import re
from pathlib import Path

import pytest

from orchestrator import definitions
from pipelines import services
from tests.agent.conftest import log_text
from tests.pipelines.test_runs import execution_of, run_until_done

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[2] / "docs" / "pipelines.md"


def example() -> str:
    return re.search(r"```yaml\n(.*?)```", DOCS.read_text(), re.S).group(1)


def test_the_worked_example_runs_as_the_docs_say(make_agent):
    pipeline = definitions.apply(definitions.parse(example())).pipeline
    jobs = {j.name: j for j in pipeline.jobs.all()}
    assert set(jobs) == {
        "lint",
        "build",
        "test-unit",
        "test-integration",
        "test-e2e",
        "package",
        "deploy",
    }
    run = services.pipeline_run_start(pipeline=pipeline, env={"TARGET": "staging"})
    run = run_until_done(make_agent(concurrency=4), run)
    assert run.status == "succeeded"  # lint failed, but may
    states = {j["name"]: j["state"] for j in services.run_jobs(run)}
    assert states.pop("lint") == "failed"
    assert set(states.values()) == {"succeeded"}
    for test in ("test-unit", "test-integration", "test-e2e"):
        assert "of 1.4.2 passed" in log_text(execution_of(run, jobs[test]))
    tests = [execution_of(run, jobs[t]) for t in ("test-unit", "test-integration", "test-e2e")]
    build, package = execution_of(run, jobs["build"]), execution_of(run, jobs["package"])
    assert all(build.finished_at <= t.started_at for t in tests)
    assert all(t.finished_at <= package.started_at for t in tests)
    assert package.outputs == {"ARTIFACT": "release-1.4.2.tar.gz"}
    deploy = log_text(execution_of(run, jobs["deploy"]))
    assert deploy == "deploying release-1.4.2.tar.gz to staging\n"
