"""Real agent processes against the real database: crashes, races, volume."""

import os
import signal
from pathlib import Path

import pytest
from django.db import transaction

from tests.factories import JobFactory
from tests.processes import Ledger, start_agent, stop, wait_for
from workermanager.choices import TERMINAL, ExecutionStatus, WorkerStatus
from workermanager.models import Execution, Worker
from workermanager.services import execution_enqueue
from workermanager.workers import workers_reap

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus


def status_of(execution) -> str:
    execution.refresh_from_db()
    return execution.status


@pytest.fixture
def ledger():
    ledger = Ledger()
    yield ledger
    ledger.close()


def test_kill_9_of_an_agent_mid_run_ends_lost_and_the_retry_succeeds_elsewhere(child_env, ledger):
    job = JobFactory(command=f"echo $HODEI_ATTEMPT > {ledger.address}; sleep 2; echo finished")
    doomed = start_agent(child_env, name="doomed")
    try:
        first = execution_enqueue(job=job)
        wait_for(lambda: status_of(first) == S.RUNNING)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        survivor = start_agent(child_env, name="survivor")
        try:
            # Peer reaping (and the qcluster task) notices the silence within a few
            # heartbeats; the lost execution is retried under the infrastructure budget.
            wait_for(lambda: status_of(first) == S.LOST, timeout=15)
            retry = wait_for(lambda: Execution.objects.filter(retry_of=first).first())
            wait_for(lambda: status_of(retry) in TERMINAL, timeout=15)
        finally:
            stop(survivor)
    finally:
        stop(doomed)
    assert retry.status == S.SUCCEEDED
    assert retry.worker.name == "survivor"
    assert retry.attempt == 2
    assert Worker.objects.get(name="doomed").status == WorkerStatus.OFFLINE
    assert wait_for(lambda: sorted(ledger.lines()) == ["1", "2"])


def test_500_executions_across_3_agents_each_run_exactly_once(child_env, ledger):
    command = f'echo "$HODEI_EXECUTION_ID" > {ledger.address}'
    agents = [start_agent(child_env, name=f"racer-{i}", concurrency=4) for i in range(3)]
    try:
        # Queued once all three listen, in one transaction: they race for the same rows
        # from the first NOTIFY (queued before, the first agent would drain the lot
        # while the others start).
        with transaction.atomic():
            executions = [execution_enqueue(command=command) for _ in range(500)]
        wait_for(
            lambda: not Execution.objects.filter(status__in=[S.QUEUED, S.RUNNING]).exists(),
            timeout=120,
            interval=0.2,
        )
    finally:
        for agent in agents:
            stop(agent)
    ran = wait_for(lambda: len(ledger.lines()) >= 500 and ledger.lines())
    assert len(ran) == 500
    assert sorted(ran) == sorted(str(e.id) for e in executions)
    assert Execution.objects.filter(status=S.SUCCEEDED).count() == 500
    per_worker = {w.name: w.executions.count() for w in Worker.objects.all()}
    assert sum(per_worker.values()) == 500
    assert all(count > 0 for count in per_worker.values()), per_worker


def test_50_mib_of_output_completes_with_bounded_agent_memory(child_env):
    env = {**child_env, "HODEI_LOG_MAX_BYTES": str(64 * 1024 * 1024)}
    agent = start_agent(env, name="chatty")
    try:
        execution = execution_enqueue(
            command="head -c 52428800 /dev/urandom | base64 -w 100 | head -c 52428800"
        )
        wait_for(lambda: status_of(execution) in TERMINAL, timeout=120, interval=0.2)
        peak_kib = int(
            next(
                line.split()[1]
                for line in Path(f"/proc/{agent.pid}/status").read_text().splitlines()
                if line.startswith("VmHWM:")
            )
        )
    finally:
        assert stop(agent) == 0
    assert execution.status == S.SUCCEEDED
    assert execution.log_bytes == 52428800
    assert not execution.log_truncated
    stored = sum(len(c.message) for c in execution.logs.all())
    assert stored == 52428800
    assert peak_kib < 150 * 1024, f"agent peak RSS {peak_kib} KiB"


def test_sigterm_stops_the_agent_gracefully_and_marks_it_offline(child_env):
    agent = start_agent(child_env, name="graceful", extra=["--shutdown-grace-seconds", "1"])
    execution = execution_enqueue(command="sleep 30")
    wait_for(lambda: status_of(execution) == S.RUNNING)
    assert stop(agent) == 0
    execution.refresh_from_db()
    assert execution.status == S.CANCELLED
    assert Worker.objects.get(name="graceful").status == WorkerStatus.OFFLINE
    assert workers_reap() == []
