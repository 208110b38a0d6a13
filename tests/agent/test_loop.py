"""The agent's loop, in process, against the real database and real commands."""

import os
from datetime import timedelta

import pytest

from hodei.lib import clock
from tests.agent.conftest import drive, log_text, workdirs_left, worker_of
from tests.factories import JobFactory, WorkerFactory
from tests.processes import processes_running, sleep_marker
from workermanager.choices import ExecutionStatus, LogStream, Trigger, WorkerStatus
from workermanager.models import Execution
from workermanager.services import (
    execution_cancel,
    execution_enqueue,
    execution_settle,
    executions_claim,
    executions_lose,
)
from workermanager.workers import workers_reap

S = ExecutionStatus


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_echo_succeeds_with_its_output_in_the_log(make_agent):
    agent = make_agent()
    execution = drive(agent, execution_enqueue(command="echo hello world"))
    assert execution.status == S.SUCCEEDED
    assert execution.exit_code == 0
    assert str(execution.worker_id) == agent.worker_id
    assert execution.started_at <= execution.finished_at
    assert execution.duration_ms is not None
    assert log_text(execution) == "hello world\n"
    assert execution.log_bytes == len("hello world\n")


def test_exit_3_fails_with_exit_code_and_stderr_at_error_level(make_agent):
    agent = make_agent()
    execution = drive(agent, execution_enqueue(command="echo out; echo bad >&2; exit 3"))
    assert execution.status == S.FAILED
    assert execution.exit_code == 3
    stderr = execution.logs.get(stream=LogStream.STDERR)
    assert stderr.message == "bad\n"
    assert stderr.level == "error"
    assert execution.logs.get(stream=LogStream.STDOUT).level == "info"


@pytest.mark.parametrize(
    ("type", "command", "expected"),
    [
        ("bash", "echo ${BASH_VERSION:+bash}", "bash\n"),
        ("sh", "echo sh-$((1+1))", "sh-2\n"),
        ("python", "import sys; print(sys.version_info[0])", "3\n"),
    ],
)
def test_it_runs_each_command_type(make_agent, type, command, expected):
    agent = make_agent()
    execution = drive(agent, execution_enqueue(command=command, type=type))
    assert execution.status == S.SUCCEEDED, log_text(execution)
    assert log_text(execution) == expected


def test_environment_has_job_env_overrides_and_hodei_ids_but_not_agent_secrets(
    make_agent, monkeypatch
):
    monkeypatch.setenv("SECRET_KEY", "agent-secret-must-not-leak")
    job = JobFactory(
        command='echo "$A $B $HODEI_EXECUTION_ID $HODEI_JOB_ID $HODEI_ATTEMPT ${SECRET_KEY:-none}"',
        env={"A": "job-a", "B": "job-b"},
    )
    agent = make_agent()
    execution = drive(agent, execution_enqueue(job=job, env={"B": "override-b"}))
    assert log_text(execution) == f"job-a override-b {execution.id} {job.id} 1 none\n"


def test_secret_env_values_are_masked_in_the_log(make_agent):
    job = JobFactory(command='echo "token is $TOKEN"', secret_env={"TOKEN": "s3cr3t-value"})
    execution = drive(make_agent(), execution_enqueue(job=job))
    assert execution.status == S.SUCCEEDED
    assert log_text(execution) == "token is ********\n"


def test_it_runs_in_a_fresh_working_directory_that_is_removed(make_agent, workdir_root):
    agent = make_agent()
    execution = drive(agent, execution_enqueue(command="pwd; ls -A | wc -l; touch left-behind"))
    assert execution.status == S.SUCCEEDED, log_text(execution)
    workdir, count = log_text(execution).split()
    assert count == "0"
    if agent.config.isolation == "none":
        assert workdir.startswith(workdir_root)
    # Removed, with what the command left in it.
    assert workdirs_left(agent, workdir_root) == []


def test_an_empty_working_directory_serves_the_next_run_and_goes_when_the_agent_stops(
    make_agent, workdir_root
):
    agent = make_agent(concurrency=1)
    first = drive(agent, execution_enqueue(command="true"))
    assert first.status == S.SUCCEEDED
    kept = os.listdir(workdir_root)
    assert len(kept) == 1  # left empty: kept for the next run
    second = drive(agent, execution_enqueue(command="ls -A | wc -l"))
    assert log_text(second).split() == ["0"]  # as fresh as a new one
    assert os.listdir(workdir_root) == kept
    agent.shutdown()
    assert os.listdir(workdir_root) == []


def test_a_working_directory_a_command_changed_is_never_reused(make_agent, workdir_root):
    agent = make_agent(concurrency=1)
    execution = drive(agent, execution_enqueue(command="chmod 755 ."))
    assert execution.status == S.SUCCEEDED, log_text(execution)
    assert workdirs_left(agent, workdir_root) == []  # its mode changed: removed, not kept


def test_empty_command_succeeds_at_once_without_a_worker(db):
    job = JobFactory(command="")
    execution = execution_enqueue(job=job)
    assert execution.status == S.SUCCEEDED
    assert execution.exit_code == 0
    assert execution.worker_id is None


def test_timeout_kills_the_whole_process_group(make_agent):
    agent = make_agent()
    marker = sleep_marker()
    execution = execution_enqueue(command=f"sleep {marker} & wait", timeout_seconds=1)
    execution = drive(agent, execution)
    assert execution.status == S.TIMED_OUT
    assert "Timed out" in execution.error
    assert 900 <= execution.duration_ms < 5000
    assert processes_running(marker) == []
    assert "[hodei] stopping the command: timeout" in log_text(execution)


def test_cancelling_a_running_command_ends_cancelled_within_2s(make_agent):
    agent = make_agent()
    marker = sleep_marker()
    execution = execution_enqueue(command=f"sleep {marker} & wait")
    drive(agent, execution, until=lambda e: e.status == S.RUNNING and processes_running(marker))
    execution_cancel(execution=execution)
    cancelled = drive(agent, execution, timeout=2.0)
    assert cancelled.status == S.CANCELLED
    assert cancelled.cancel_requested
    assert processes_running(marker) == []


def test_cancelling_a_queued_execution_is_immediate(db):
    execution = execution_enqueue(command="echo never")
    execution_cancel(execution=execution)
    execution.refresh_from_db()
    assert execution.status == S.CANCELLED
    assert execution.finished_at is not None


def test_output_past_the_cap_is_dropped_with_one_marker_and_the_command_runs_on(make_agent):
    agent = make_agent(log_max_bytes=4096)
    execution = drive(
        agent, execution_enqueue(command="head -c 100000 /dev/zero | tr '\\0' x; echo; echo end")
    )
    assert execution.status == S.SUCCEEDED
    assert execution.log_truncated
    assert execution.log_bytes == 100005
    text = log_text(execution)
    assert text.count("output truncated") == 1
    assert "end" not in text
    assert text.count("x") == 4096


def test_a_command_that_cannot_start_fails_with_the_reason(make_agent, tmp_path):
    agent = make_agent(workdir_root=str(tmp_path / "missing" / "dir"))
    execution = drive(agent, execution_enqueue(command="echo hi"))
    assert execution.status == S.FAILED
    assert "Could not start" in execution.error
    assert execution.exit_code is None


def test_failed_execution_is_retried_by_the_job_policy_with_backoff(make_agent):
    job = JobFactory(command="exit 1", max_retries=2, retry_delay_seconds=0)
    agent = make_agent()
    first = drive(agent, execution_enqueue(job=job))
    assert first.status == S.FAILED
    second = Execution.objects.get(retry_of=first)
    assert (second.attempt, second.trigger, second.retries_used) == (2, Trigger.RETRY, 1)
    second = drive(agent, second)
    third = Execution.objects.get(retry_of=second)
    third = drive(agent, third)
    assert third.attempt == 3
    assert not Execution.objects.filter(retry_of=third).exists()
    job.refresh_from_db()
    assert job.status == S.FAILED


def test_retry_waits_for_its_backoff_delay(db):
    job = JobFactory(command="exit 1", max_retries=1, retry_delay_seconds=30, retry_backoff=2)
    execution = execution_enqueue(job=job)
    worker = WorkerFactory()
    assert executions_claim(worker=worker, limit=5) == [execution]
    execution_settle(execution=execution, worker=worker, status=S.FAILED, exit_code=1)
    retry = Execution.objects.get(retry_of=execution)
    delay = (retry.available_at - execution.finished_at).total_seconds()
    assert 29 <= delay <= 31
    assert executions_claim(worker=worker, limit=5) == []


def test_a_late_report_after_the_execution_was_lost_changes_nothing(make_agent):
    agent = make_agent()
    execution = execution_enqueue(command="sleep 0.5; echo late")
    drive(agent, execution, until=lambda e: e.status == S.RUNNING)
    executions_lose(worker=worker_of(agent), now=clock.now(), reason="test")
    execution = drive(agent, execution, until=lambda e: str(e.id) not in agent.runs)
    assert execution.status == S.LOST


def test_worker_type_routes_executions(make_agent):
    gpu = make_agent(type="gpu")
    cpu_only = execution_enqueue(command="true", worker_type="cpu")
    any_type = execution_enqueue(command="true")
    drive(gpu, any_type)
    for _ in range(10):
        gpu.step(timeout=0.02)
    cpu_only.refresh_from_db()
    assert any_type.status == S.SUCCEEDED
    assert cpu_only.status == S.QUEUED


def test_it_never_runs_more_than_its_concurrency(make_agent):
    agent = make_agent(concurrency=2)
    executions = [execution_enqueue(command="sleep 0.3") for _ in range(5)]
    seen_max = 0
    while Execution.objects.filter(status__in=[S.QUEUED, S.RUNNING]).exists():
        agent.step(timeout=0.02)
        seen_max = max(seen_max, Execution.objects.filter(status=S.RUNNING).count())
    assert seen_max == 2
    assert all(Execution.objects.get(pk=e.pk).status == S.SUCCEEDED for e in executions)


def test_a_draining_worker_takes_no_new_work(make_agent):
    agent = make_agent(heartbeat_seconds=0)
    worker = worker_of(agent)
    worker.drain()
    agent.step(timeout=0.02)
    execution = execution_enqueue(command="true")
    for _ in range(5):
        agent.step(timeout=0.02)
    execution.refresh_from_db()
    assert execution.status == S.QUEUED
    worker.undrain()
    assert drive(agent, execution).status == S.SUCCEEDED


def test_stop_lets_short_commands_finish_and_cancels_the_rest(make_agent):
    agent = make_agent(shutdown_grace_seconds=0.8)
    quick = execution_enqueue(command="sleep 0.2; echo done")
    slow = execution_enqueue(command="sleep 30")
    drive(agent, slow, until=lambda e: e.status == S.RUNNING and len(agent.runs) == 2)
    agent.request_stop()
    while not agent.step(timeout=0.02):
        pass
    agent.shutdown()
    quick.refresh_from_db()
    slow.refresh_from_db()
    assert quick.status == S.SUCCEEDED
    assert slow.status == S.CANCELLED
    assert "shut down" in slow.error
    assert worker_of(agent).status == WorkerStatus.OFFLINE


def test_reaper_marks_silent_workers_offline_and_their_work_lost_then_retried(make_agent):
    agent = make_agent()
    execution = execution_enqueue(command="sleep 30")
    drive(agent, execution, until=lambda e: e.status == S.RUNNING)
    later = clock.now() + timedelta(minutes=5)
    reaped = workers_reap(now=later)
    assert [str(w.id) for w in reaped] == [agent.worker_id]
    execution.refresh_from_db()
    assert execution.status == S.LOST
    retry = Execution.objects.get(retry_of=execution)
    assert (retry.status, retry.attempt, retry.lost_retries_used) == (S.QUEUED, 2, 1)
    # The agent notices that its execution is no longer its own and kills the command.
    pid = agent.runs[str(execution.id)].process.pid
    drive(agent, execution, until=lambda e: str(e.id) not in agent.runs)
    assert not pid_alive(pid)


def test_lost_retry_budget_is_separate_and_bounded(db):
    job = JobFactory(command="sleep 30", max_retries=0, max_lost_retries=1)
    worker = WorkerFactory()
    first = execution_enqueue(job=job)
    assert executions_claim(worker=worker, limit=1) == [first]
    executions_lose(worker=worker, now=clock.now(), reason="test")
    second = Execution.objects.get(retry_of=first)
    assert second.lost_retries_used == 1
    assert executions_claim(worker=worker, limit=1) == [second]
    executions_lose(worker=worker, now=clock.now(), reason="test")
    assert not Execution.objects.filter(retry_of=second).exists()
