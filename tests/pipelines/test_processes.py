"""Pipelines with real processes on PostgreSQL: many runs of a diamond across two agents
(each child queued exactly once), a scheduled pipeline fired by two qclusters, and
runpipeline --follow."""

import subprocess
import sys
from datetime import timedelta

import pytest

from pipelines import services
from pipelines.models import PipelineRun
from scheduler.models import ScheduleFire
from scheduler.services import schedule_create, schedule_update
from tests.factories import JobFactory, PipelineFactory
from tests.processes import ROOT, Ledger, start_agent, start_qcluster, stop, stop_group, wait_for
from workermanager.models import Execution

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ledger():
    ledger = Ledger()
    yield ledger
    ledger.close()


def diamond(command: str):
    """a -> (b, c) -> d, each running ``command`` with its name in $NODE."""
    pipeline = PipelineFactory()
    jobs = {
        name: JobFactory(pipeline=pipeline, name=name, command=command, env={"NODE": name})
        for name in "abcd"
    }
    jobs["b"].depends_on.set([jobs["a"]])
    jobs["c"].depends_on.set([jobs["a"]])
    jobs["d"].depends_on.set([jobs["b"], jobs["c"]])
    return pipeline


def test_a_hundred_diamonds_on_two_agents_run_each_job_exactly_once(child_env, ledger):
    pipeline = diamond(f"echo $RUN-$NODE > {ledger.address}")
    agents = [start_agent(child_env, name=f"dag-{i}", concurrency=4) for i in range(2)]
    try:
        runs = [
            services.pipeline_run_start(pipeline=pipeline, env={"RUN": str(i)}) for i in range(100)
        ]
        ids = [r.pk for r in runs]
        wait_for(
            lambda: (
                not PipelineRun.objects.filter(
                    pk__in=ids, status__in=("queued", "running")
                ).exists()
            ),
            timeout=240,
            interval=0.5,
        )
    finally:
        for agent in agents:
            stop(agent)
    assert set(PipelineRun.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        "succeeded"
    }
    assert Execution.objects.filter(pipeline_run__in=ids).count() == 400
    lines = wait_for(lambda: (got := ledger.lines()) and len(got) >= 400 and got)
    expected = sorted(f"{i}-{node}" for i in range(100) for node in "abcd")
    assert sorted(lines) == expected  # every job ran, and none twice
    workers = set(
        Execution.objects.filter(pipeline_run__in=ids).values_list("worker__name", flat=True)
    )
    assert workers == {"dag-0", "dag-1"}
    # d started after both b and c, in every run
    for run_id in ids[:20]:
        by_name = {
            e.job.name: e
            for e in Execution.objects.filter(pipeline_run=run_id).select_related("job")
        }
        assert by_name["d"].started_at >= max(by_name["b"].finished_at, by_name["c"].finished_at)


def test_a_scheduled_pipeline_fires_once_per_slot_with_two_qclusters(child_env):
    pipeline = diamond("true")
    clusters = [start_qcluster(child_env) for _ in range(2)]
    agent = start_agent(child_env, name="sched-dag", concurrency=4)
    try:
        schedule = schedule_create(pipeline=pipeline, cron="*/2 * * * * *", overlap_policy="allow")
        wait_for(
            lambda: PipelineRun.objects.filter(schedule=schedule, status="succeeded").count() >= 4,
            timeout=60,
            interval=0.2,
        )
        schedule_update(schedule=schedule, enabled=False)
    finally:
        for cluster in clusters:
            stop_group(cluster)
        stop(agent)
    slots = sorted(
        PipelineRun.objects.filter(schedule=schedule).values_list("scheduled_for", flat=True)
    )
    assert len(slots) == len(set(slots))
    assert [b - a for a, b in zip(slots, slots[1:], strict=False)] == [timedelta(seconds=2)] * (
        len(slots) - 1
    )
    fires = ScheduleFire.objects.filter(schedule=schedule, outcome="fired")
    assert fires.count() == len(slots)
    assert all(f.pipeline_run_id for f in fires)


def test_runpipeline_follow_prints_each_job_and_exits_by_the_outcome(child_env):
    good = diamond("echo $NODE")
    bad = PipelineFactory(name="bad-one")
    first = JobFactory(pipeline=bad, name="first", command="exit 4")
    JobFactory(pipeline=bad, name="second", command="true").depends_on.set([first])
    agent = start_agent(child_env, name="follow-agent", concurrency=2)

    def follow(name_or_id):
        return subprocess.run(
            [sys.executable, "manage.py", "runpipeline", name_or_id, "--env", "X=1", "--follow"],
            cwd=ROOT,
            env=child_env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        ok = follow(str(good.pk))
        failed = follow("bad-one")
    finally:
        stop(agent)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[-1] == "d: succeeded"
    # Each job as first seen (a quick one may have finished by then), then each change,
    # each ending succeeded.
    states: dict[str, list[str]] = {}
    for line in ok.stdout.splitlines():
        job, sep, state = line.partition(": ")
        if sep and job in {"a", "b", "c", "d"}:
            states.setdefault(job, []).append(state)
    assert sorted(states) == ["a", "b", "c", "d"], ok.stdout
    assert all(seen[-1] == "succeeded" for seen in states.values()), ok.stdout
    assert states["d"][0] in ("pending", "queued", "running", "succeeded"), ok.stdout
    assert "succeeded" in ok.stderr.splitlines()[-1]
    assert failed.returncode == 1
    assert "first: failed (exit 4)" in failed.stdout and "second: skipped" in failed.stdout
    assert PipelineRun.objects.get(pipeline=bad).trigger == "cli"
