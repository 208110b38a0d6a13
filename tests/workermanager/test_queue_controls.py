"""A job's concurrency limit and priority, honoured by the claim of two real agents on
PostgreSQL (and by the SQLite claim in-process)."""

import pytest

from tests.factories import JobFactory
from tests.processes import start_agent, stop, wait_for
from workermanager.choices import TERMINAL
from workermanager.models import Execution
from workermanager.services import execution_enqueue


def max_overlap(executions) -> int:
    """The most executions that ran at the same moment (from their start and end)."""
    edges = sorted(
        [(e.started_at, 1) for e in executions] + [(e.finished_at, -1) for e in executions],
        key=lambda edge: (edge[0], edge[1]),
    )
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_agents_never_run_more_than_the_limit(child_env):
    limited = JobFactory(command="sleep 0.4", concurrency_limit=2)
    free = JobFactory(command="sleep 0.4")
    agents = [start_agent(child_env, name=f"limit-{i}", concurrency=4) for i in range(2)]
    try:
        batch = [execution_enqueue(job=limited) for _ in range(10)]
        others = [execution_enqueue(job=free) for _ in range(6)]
        wait_for(
            lambda: Execution.objects.filter(status__in=TERMINAL).count() == 16,
            timeout=60,
            interval=0.1,
        )
    finally:
        for agent in agents:
            stop(agent)
    ran = list(Execution.objects.filter(job=limited))
    assert {e.status for e in ran} == {"succeeded"} and len(ran) == len(batch)
    assert max_overlap(ran) <= 2
    workers = set(Execution.objects.values_list("worker__name", flat=True))
    assert workers == {"limit-0", "limit-1"}  # both claimed, racing
    # The limit holds back its own job only: the others ran alongside.
    assert max_overlap(list(Execution.objects.filter(job=free))) > 2
    assert len(others) == 6


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_higher_priority_runs_first_fifo_within_a_priority(child_env):
    low = JobFactory(command="true", priority=-5)
    high = JobFactory(command="true", priority=50)
    queued = [execution_enqueue(job=low) for _ in range(5)]
    queued += [execution_enqueue(job=high) for _ in range(5)]
    agents = [start_agent(child_env, name=f"prio-{i}", concurrency=1) for i in range(2)]
    try:
        wait_for(lambda: Execution.objects.filter(status__in=TERMINAL).count() == 10, timeout=30)
    finally:
        for agent in agents:
            stop(agent)
    order = list(Execution.objects.order_by("started_at", "id").values_list("job_id", "id"))
    assert [job for job, _ in order[:4]] == [high.pk] * 4  # two agents, one slot each
    highs = [pk for job, pk in order if job == high.pk]
    assert highs[:3] == sorted(highs)[:3]  # oldest first within a priority
    assert len(queued) == 10


@pytest.mark.django_db
def test_the_claim_honours_limits_and_priority_in_process(make_agent):
    limited = JobFactory(command="sleep 0.3", concurrency_limit=1)
    urgent = JobFactory(command="true", priority=10)
    for _ in range(3):
        execution_enqueue(job=limited)
    first_urgent = execution_enqueue(job=urgent)
    agent = make_agent(concurrency=4)
    agent.step(timeout=0.05)
    running = Execution.objects.filter(status="running")
    assert running.filter(job=limited).count() <= 1
    first_urgent.refresh_from_db()
    assert first_urgent.status in ("running", "succeeded")


@pytest.mark.django_db
def test_execute_takes_a_priority_and_jobs_validate_theirs(wm, orch):
    job = JobFactory(priority=3)
    response = wm.post("/api/v1/execute", {"job_id": str(job.pk)}, format="json")
    assert response.status_code == 201 and response.json()["priority"] == 3
    response = wm.post("/api/v1/execute", {"job_id": str(job.pk), "priority": 9}, format="json")
    assert response.json()["priority"] == 9
    response = wm.post("/api/v1/execute", {"command": "true", "priority": 101}, format="json")
    assert response.status_code == 400 and "priority" in response.json()["fields"]
    response = orch.patch(f"/api/v1/jobs/{job.pk}", {"concurrency_limit": 0}, format="json")
    assert response.status_code == 400 and "concurrency_limit" in response.json()["fields"]
    response = orch.patch(
        f"/api/v1/jobs/{job.pk}", {"concurrency_limit": 2, "priority": -7}, format="json"
    )
    assert response.status_code == 200, response.content
    assert (response.json()["concurrency_limit"], response.json()["priority"]) == (2, -7)
