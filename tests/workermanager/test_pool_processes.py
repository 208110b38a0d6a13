"""Worker pools for real: qcluster processes reconcile them, the local provider starts
real agents (HTTP mode, against a real worker manager), commands really run. PostgreSQL
only (LISTEN/NOTIFY, row locks between the reconcilers of two qclusters)."""

import os
import signal
import time
from pathlib import Path

import pytest

from tests.processes import start_qcluster, start_service, stop, stop_group, wait_for
from workermanager import pools, selectors
from workermanager.choices import (
    MANAGED_LIVE,
    TERMINAL,
    ExecutionStatus,
    ManagedWorkerStatus,
    WorkerStatus,
)
from workermanager.models import Execution, ManagedWorker, WorkerPool
from workermanager.services import execution_enqueue

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
M = ManagedWorkerStatus


@pytest.fixture(scope="module")
def workermanager_service(child_env):
    proc, base = start_service(child_env, "workermanager", args=("--threads", "8"))
    yield base
    stop(proc)


def agent_running(row: ManagedWorker) -> bool:
    """Whether the agent process of ``row`` is alive (not a zombie)."""
    if row.pid is None:
        return False
    try:
        state = Path(f"/proc/{row.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{row.pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X") and row.name.encode() in cmdline


@pytest.fixture
def cluster(child_env, workermanager_service):
    """cluster(n, **env) starts n qcluster processes that reconcile pools every half
    second; at the end they stop (and stop their pools' agents), and any agent still
    alive is killed."""
    procs = []

    def start(count=1, **env):
        environment = {
            **child_env,
            "HODEI_WORKERMANAGER_URL": workermanager_service,
            "HODEI_POOL_RECONCILE_SECONDS": "0.5",
            **env,
        }
        procs.extend(start_qcluster(environment) for _ in range(count))

    yield start
    for proc in procs:
        stop_group(proc, timeout=30)
    for row in ManagedWorker.objects.all():
        if agent_running(row):
            os.killpg(row.pid, signal.SIGKILL)


def pool_agents_alive(pool) -> int:
    """Agent processes of the pool alive now, whatever their rows say."""
    return sum(agent_running(row) for row in ManagedWorker.objects.filter(pool=pool))


def test_a_burst_scales_up_to_max_drains_the_queue_and_returns_to_zero(cluster):
    pool = pools.pool_create(
        worker_type="burst", min_workers=0, max_workers=3, concurrency=1, idle_seconds=3
    )
    cluster(2)  # two reconcilers at once
    started = time.monotonic()
    for _ in range(60):
        execution_enqueue(command="sleep 1", worker_type="burst")

    rows, processes, first_agent_after = [], [], None
    while True:
        live = ManagedWorker.objects.filter(pool=pool, status__in=MANAGED_LIVE)
        rows.append(live.count())
        processes.append(pool_agents_alive(pool))
        if first_agent_after is None and live.filter(status=M.RUNNING).exists():
            first_agent_after = time.monotonic() - started
        finished = Execution.objects.filter(worker_type="burst", status__in=TERMINAL).count()
        if finished >= 60:
            break
        assert time.monotonic() - started < 70, f"{finished} of 60 finished"
        time.sleep(0.1)

    assert first_agent_after is not None and first_agent_after < 5, first_agent_after
    assert max(rows) == 3 and max(processes) <= 3, (max(rows), max(processes))
    outcomes = Execution.objects.filter(worker_type="burst").values_list("status", flat=True)
    assert list(outcomes) == [ExecutionStatus.SUCCEEDED] * 60
    # Three agents shared the work.
    served = Execution.objects.filter(worker_type="burst").values("worker_id").distinct()
    assert served.count() == 3

    # Idle for 3 s: drained and stopped, back to none.
    wait_for(
        lambda: (
            not ManagedWorker.objects.filter(pool=pool, status__in=MANAGED_LIVE).exists()
            and pool_agents_alive(pool) == 0
        ),
        timeout=20,
        interval=0.2,
    )
    scalings = list(
        pool.scalings.order_by("id").values_list("from_workers", "to_workers", "reason")
    )
    assert scalings[0] == (0, 3, "queue"), scalings
    assert scalings[-1][1:] == (0, "idle"), scalings
    assert all(to <= 3 for _, to, _ in scalings)
    assert ManagedWorker.objects.filter(pool=pool, status=M.STOPPED).count() == 3
    assert not ManagedWorker.objects.filter(pool=pool, status=M.FAILED).exists()
    counts = selectors.pools_with_worker_counts().get(pk=pool.pk)
    assert (counts.current_workers, counts.desired_workers) == (0, 0)


def test_an_agent_killed_with_sigkill_is_replaced_and_its_work_retried(cluster):
    pool = pools.pool_create(worker_type="kill9", min_workers=1, max_workers=2, idle_seconds=60)
    cluster()
    victim = wait_for(
        lambda: ManagedWorker.objects.filter(pool=pool, status=M.RUNNING).first(), timeout=15
    )
    execution = execution_enqueue(command="sleep 2; echo done", worker_type="kill9")
    wait_for(lambda: Execution.objects.get(pk=execution.pk).status == ExecutionStatus.RUNNING)

    os.kill(victim.pid, signal.SIGKILL)
    replacement = wait_for(
        lambda: (
            ManagedWorker.objects.filter(pool=pool, status=M.RUNNING).exclude(pk=victim.pk).first()
        ),
        timeout=15,
    )
    victim.refresh_from_db()
    assert victim.status == M.FAILED
    assert "exited" in victim.failure_reason
    assert victim.worker.status == WorkerStatus.OFFLINE
    assert agent_running(replacement)
    assert pool.scalings.order_by("-id").first().reason == "replace"

    # The lost execution ran again, on the replacement.
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.LOST
    retry = wait_for(lambda: Execution.objects.filter(retry_of=execution).first())
    wait_for(lambda: Execution.objects.get(pk=retry.pk).status in TERMINAL, timeout=20)
    retry.refresh_from_db()
    assert (retry.status, retry.worker_id) == (ExecutionStatus.SUCCEEDED, replacement.worker_id)
    assert ManagedWorker.objects.filter(pool=pool, status__in=MANAGED_LIVE).count() == 1


def test_scaling_down_never_kills_a_running_command(cluster):
    # A stopped agent would kill its commands half a second after SIGTERM: only the
    # drain (nothing is stopped while it runs something) lets this one finish.
    pool = pools.pool_create(worker_type="drain", min_workers=1, max_workers=1)
    cluster(HODEI_SHUTDOWN_GRACE_SECONDS="0.5", HODEI_KILL_GRACE_SECONDS="0.5")
    agent = wait_for(
        lambda: ManagedWorker.objects.filter(pool=pool, status=M.RUNNING).first(), timeout=15
    )
    execution = execution_enqueue(command="sleep 4; echo survived", worker_type="drain")
    wait_for(lambda: Execution.objects.get(pk=execution.pk).status == ExecutionStatus.RUNNING)

    assert pools.pool_delete(pool=pool) is not None  # drains, then stops
    wait_for(lambda: ManagedWorker.objects.get(pk=agent.pk).status == M.STOPPING, timeout=5)
    agent.refresh_from_db()
    assert agent.worker.status == WorkerStatus.DRAINING
    time.sleep(1.5)  # several passes: still draining, still running its command
    assert agent_running(agent)
    assert ManagedWorker.objects.get(pk=agent.pk).status == M.STOPPING
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.RUNNING

    wait_for(lambda: Execution.objects.get(pk=execution.pk).status in TERMINAL, timeout=15)
    execution.refresh_from_db()
    assert (execution.status, execution.exit_code) == (ExecutionStatus.SUCCEEDED, 0)
    assert "survived" in "".join(execution.logs.values_list("message", flat=True))
    # Then it stops, and the pool goes.
    wait_for(lambda: not WorkerPool.objects.filter(pk=pool.pk).exists(), timeout=10)
    agent.refresh_from_db()
    assert agent.status == M.STOPPED and not agent_running(agent)
