"""Pipeline runs with a real agent and real commands: DAG order and parallelism,
failure, allow_failure, retries, outputs, cancel, retry of a run, pipeline status."""

import time

import pytest

from hodei.exceptions import Conflict
from orchestrator import services as orchestrator
from pipelines import services
from pipelines.models import PipelineRun
from tests.agent.conftest import log_text
from tests.factories import JobFactory, PipelineFactory
from workermanager.models import Execution

pytestmark = pytest.mark.django_db

FINISHED = ("succeeded", "failed", "cancelled")


def dag(**jobs) -> tuple:
    """dag(a="echo a", b=("echo b", ["a"]), ...) -> (pipeline, {name: job})."""
    pipeline = PipelineFactory()
    made = {}
    for name, spec in jobs.items():
        command, needs, extra = (spec, [], {}) if isinstance(spec, str) else (*spec, {})[:3]
        made[name] = JobFactory(pipeline=pipeline, name=name, command=command, **extra)
    for name, spec in jobs.items():
        if not isinstance(spec, str) and spec[1]:
            made[name].depends_on.set([made[n] for n in spec[1]])
    return pipeline, made


def run_until_done(agent, run: PipelineRun, *, timeout: float = 30.0, on_step=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        agent.step(timeout=0.02)
        if on_step:
            on_step()
        run.refresh_from_db()
        if run.status in FINISHED and not agent.runs:
            return run
    raise AssertionError(f"run still {run.status} after {timeout} s")


def execution_of(run, job) -> Execution:
    return run.executions.filter(job=job).order_by("-id").first()


@pytest.fixture
def agent(make_agent):
    return make_agent(concurrency=4)


def test_a_chain_runs_in_order(agent):
    pipeline, jobs = dag(a="echo a", b=("echo b", ["a"]), c=("echo c", ["b"]))
    run = run_until_done(agent, services.pipeline_run_start(pipeline=pipeline))
    assert run.status == "succeeded"
    a, b, c = (execution_of(run, jobs[n]) for n in "abc")
    assert a.finished_at <= b.started_at and b.finished_at <= c.started_at
    assert run.started_at == a.started_at and run.finished_at >= c.finished_at


def test_a_diamond_runs_its_middle_in_parallel(agent):
    pipeline, jobs = dag(
        a="true", b=("sleep 0.5", ["a"]), c=("sleep 0.5", ["a"]), d=("true", ["b", "c"])
    )
    seen_parallel = []

    def watch():
        running = Execution.objects.filter(job__in=[jobs["b"], jobs["c"]], status="running")
        seen_parallel.append(running.count())

    run = run_until_done(agent, services.pipeline_run_start(pipeline=pipeline), on_step=watch)
    assert run.status == "succeeded"
    assert max(seen_parallel) == 2
    b, c, d = (execution_of(run, jobs[n]) for n in "bcd")
    assert d.started_at >= max(b.finished_at, c.finished_at)


def test_a_wide_fan_out_and_in(agent):
    # More needs than services.FEW_NEEDS: the sink is asked "any still running?" first.
    children = {f"c{i}": ("true", ["root"]) for i in range(services.FEW_NEEDS + 4)}
    pipeline, jobs = dag(root="true", **children, sink=("true", list(children)))
    run = run_until_done(agent, services.pipeline_run_start(pipeline=pipeline))
    assert run.status == "succeeded"
    assert run.executions.count() == len(children) + 2
    sink = execution_of(run, jobs["sink"])
    assert all(execution_of(run, jobs[c]).finished_at <= sink.started_at for c in children)


def test_a_failure_skips_only_its_downstream_branch(agent):
    pipeline, jobs = dag(
        a="true", bad=("exit 3", ["a"]), after_bad=("true", ["bad"]), good=("true", ["a"])
    )
    run = run_until_done(agent, services.pipeline_run_start(pipeline=pipeline))
    assert run.status == "failed"
    states = {j["name"]: j["state"] for j in services.run_jobs(run)}
    assert states == {
        "a": "succeeded",
        "bad": "failed",
        "after_bad": "skipped",
        "good": "succeeded",
    }
    skipped = execution_of(run, jobs["after_bad"])
    assert "bad" in skipped.error and skipped.worker_id is None


def test_a_failure_skips_a_wide_fan_in_at_once_while_its_other_needs_run(agent):
    children = {f"c{i}": ("sleep 0.3", ["root"]) for i in range(services.FEW_NEEDS + 4)}
    children["c0"] = ("exit 3", ["root"])
    pipeline, jobs = dag(
        root="true", **children, sink=("true", list(children)), after=("true", ["sink"])
    )
    run = run_until_done(agent, services.pipeline_run_start(pipeline=pipeline))
    assert run.status == "failed"
    sink, after = execution_of(run, jobs["sink"]), execution_of(run, jobs["after"])
    assert (sink.status, after.status) == ("skipped", "skipped")
    assert "c0" in sink.error and "sink" in after.error
    # Skipped when c0 failed, not once the others were done.
    others = [execution_of(run, jobs[c]) for c in children if c != "c0"]
    assert all(e.status == "succeeded" for e in others)
    assert sink.finished_at < max(e.finished_at for e in others)


def test_allow_failure_neither_fails_the_run_nor_skips_dependants(agent):
    pipeline, jobs = dag(lint=("exit 1", [], {"allow_failure": True}), build=("true", ["lint"]))
    run = run_until_done(agent, services.pipeline_run_start(pipeline=pipeline))
    assert run.status == "succeeded"
    assert execution_of(run, jobs["lint"]).status == "failed"
    assert execution_of(run, jobs["build"]).status == "succeeded"


def test_a_job_uses_its_own_retries_before_the_dag_moves_on(agent):
    flaky = (
        '[ "$HODEI_ATTEMPT" -ge 2 ] || exit 1',
        [],
        {"max_retries": 2, "retry_delay_seconds": 0},
    )
    pipeline, jobs = dag(flaky=flaky, after=("true", ["flaky"]))
    run = run_until_done(agent, services.pipeline_run_start(pipeline=pipeline))
    assert run.status == "succeeded"
    attempts = run.executions.filter(job=jobs["flaky"]).order_by("id")
    assert [e.status for e in attempts] == ["failed", "succeeded"]
    assert execution_of(run, jobs["after"]).started_at >= attempts[1].finished_at


def test_outputs_reach_the_jobs_that_need_them(agent):
    pipeline, jobs = dag(
        version=('echo VERSION=1.2.3 >> "$HODEI_OUTPUT"; echo "bad line" >> "$HODEI_OUTPUT"', []),
        package=('echo "packaging $VERSION for $TARGET"', ["version"]),
    )
    run = services.pipeline_run_start(pipeline=pipeline, env={"TARGET": "linux"})
    run = run_until_done(agent, run)
    assert run.status == "succeeded"
    version = execution_of(run, jobs["version"])
    assert version.outputs == {"VERSION": "1.2.3"}
    assert "line 2 is not KEY=value" in log_text(version)
    assert log_text(execution_of(run, jobs["package"])) == "packaging 1.2.3 for linux\n"


def test_cancel_mid_run_kills_running_commands_and_cancels_the_rest(agent):
    pipeline, jobs = dag(slow="sleep 30", after=("true", ["slow"]))
    run = services.pipeline_run_start(pipeline=pipeline)
    deadline = time.monotonic() + 10
    while execution_of(run, jobs["slow"]).status != "running" and time.monotonic() < deadline:
        agent.step(timeout=0.02)
    services.pipeline_run_cancel(run=run)
    run = run_until_done(agent, run, timeout=10)
    assert run.status == "cancelled"
    assert execution_of(run, jobs["slow"]).status == "cancelled"
    assert execution_of(run, jobs["after"]).status == "cancelled"
    with pytest.raises(Conflict):
        services.pipeline_run_cancel(run=run)


def test_retry_runs_again_only_what_did_not_succeed(agent, tmp_path):
    pipeline, jobs = dag(
        a="true",
        flaky=('[ "$HODEI_ATTEMPT" -ge 2 ] || exit 1', ["a"]),
        after=("true", ["flaky"]),
        side=("true", ["a"]),
    )
    run = run_until_done(agent, services.pipeline_run_start(pipeline=pipeline))
    assert run.status == "failed"
    first_a = execution_of(run, jobs["a"]).pk
    services.pipeline_run_retry(run=run)
    run = run_until_done(agent, run)
    assert run.status == "succeeded"
    assert execution_of(run, jobs["a"]).pk == first_a  # kept
    assert run.executions.filter(job=jobs["side"]).count() == 1
    assert run.executions.filter(job=jobs["flaky"]).count() == 2
    assert run.executions.filter(job=jobs["after"]).count() == 2  # skipped, then run
    with pytest.raises(Conflict):
        services.pipeline_run_retry(run=run)  # nothing left to retry


def test_an_empty_pipeline_succeeds_at_once(db):
    run = services.pipeline_run_start(pipeline=PipelineFactory())
    assert run.status == "succeeded"


def test_an_archived_pipeline_cannot_run(db):
    with pytest.raises(Conflict, match="archived"):
        services.pipeline_run_start(pipeline=PipelineFactory(status="archived"))


def test_a_paused_pipelines_run_waits_until_it_is_active(agent):
    pipeline, jobs = dag(a="true", b=("true", ["a"]))
    orchestrator.pipeline_update(pipeline=pipeline, status="paused")
    run = services.pipeline_run_start(pipeline=pipeline)
    for _ in range(20):
        agent.step(timeout=0.02)
    assert execution_of(run, jobs["a"]).status == "pending"
    orchestrator.pipeline_update(pipeline=pipeline, status="active")
    assert run_until_done(agent, run).status == "succeeded"


def test_a_subset_runs_with_what_it_needs(agent):
    pipeline, jobs = dag(a="true", b=("true", ["a"]), c=("true", ["b"]), other="true")
    run = services.pipeline_run_start(pipeline=pipeline, jobs=[jobs["b"]])
    run = run_until_done(agent, run)
    assert {e.job.name for e in run.executions.all()} == {"a", "b"}
    assert run.status == "succeeded"


def test_outputs_are_bounded_and_a_flood_is_a_warning_not_a_failure(agent):
    flood = (
        'echo "FIRST=1" >> "$HODEI_OUTPUT"; '
        'head -c 200000 /dev/zero | tr "\\0" "x" >> "$HODEI_OUTPUT"; echo done'
    )
    pipeline, jobs = dag(big=flood, after=('echo "first=$FIRST"', ["big"]))
    run = run_until_done(agent, services.pipeline_run_start(pipeline=pipeline))
    assert run.status == "succeeded"
    big = execution_of(run, jobs["big"])
    assert big.outputs == {"FIRST": "1"}
    assert "longer than 65536 bytes" in log_text(big)
    assert log_text(execution_of(run, jobs["after"])) == "first=1\n"
