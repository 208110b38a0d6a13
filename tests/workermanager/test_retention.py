"""Retention: the purge service, its periodic task and the purge_executions command."""

from datetime import timedelta
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.models import Schedule as QSchedule

from hodei.exceptions import InvalidInput
from hodei.lib import clock
from hodei.lib.env import database_url_from_settings
from scheduler.models import ScheduleFire
from tests.factories import (
    ExecutionLogFactory,
    FinishedExecutionFactory,
    JobFactory,
    ScheduleFactory,
    WorkerFactory,
)
from workermanager import retention, tasks
from workermanager.choices import ExecutionStatus
from workermanager.management.commands.purge_executions import parse_age
from workermanager.models import Execution, ExecutionLog

pytestmark = pytest.mark.django_db

NOW = clock.now()


def aged(days: float, **kwargs) -> Execution:
    """A finished execution created ``days`` ago."""
    return FinishedExecutionFactory(created_at=NOW - timedelta(days=days), **kwargs)


def active(days: float, status: str, **kwargs) -> Execution:
    return aged(days, status=status, exit_code=None, finished_at=None, **kwargs)


def exists(execution: Execution) -> bool:
    return Execution.objects.filter(pk=execution.pk).exists()


def purge(**kwargs) -> retention.PurgeResult:
    return retention.executions_purge(now=NOW, **kwargs)


# -- what goes -------------------------------------------------------------------------


def test_it_deletes_finished_executions_past_the_default_30_days():
    old = [aged(31), aged(45, job=None), aged(400, status="failed", exit_code=1)]
    young = [aged(29), aged(29.9, job=None)]

    result = purge()

    assert (result.executions, result.logs, result.dry_run, result.complete) == (3, 0, False, True)
    assert not any(exists(e) for e in old)
    assert all(exists(e) for e in young)


def test_it_deletes_every_terminal_status():
    statuses = ["succeeded", "failed", "timed_out", "cancelled", "lost"]
    for status in statuses:
        aged(31, status=status)

    assert purge().executions == len(statuses)
    assert not Execution.objects.exists()


def test_the_global_retention_comes_from_the_setting(settings):
    settings.HODEI_RETENTION_DAYS = 7
    old, young = aged(8, job=None), aged(6, job=None)

    purge()

    assert not exists(old)
    assert exists(young)


def test_a_finished_execution_counts_its_age_from_when_it_finished():
    # Created 40 days ago, finished 10 days ago (a run that waited in the queue).
    late = aged(40, finished_at=NOW - timedelta(days=10))

    assert purge().executions == 0
    assert exists(late)


def test_a_jobs_retention_days_overrides_the_global_one():
    brief = JobFactory(retention_days=5)
    long_kept = JobFactory(retention_days=90)
    default = JobFactory()
    brief_old, brief_young = aged(6, job=brief), aged(4, job=brief)
    long_young, long_old = aged(60, job=long_kept), aged(91, job=long_kept)
    default_old, default_young = aged(31, job=default), aged(6, job=default)
    orphan_old, orphan_young = aged(31, job=None), aged(6, job=None)

    result = purge()

    assert result.executions == 4
    assert not any(exists(e) for e in (brief_old, long_old, default_old, orphan_old))
    assert all(exists(e) for e in (brief_young, long_young, default_young, orphan_young))


def test_retention_count_keeps_the_newest_finished_executions_of_the_job():
    job = JobFactory(retention_count=3)
    other = JobFactory()
    finished = [aged(10 - i, job=job) for i in range(6)]  # oldest first
    running = active(20, "running", job=job, worker=WorkerFactory())
    queued = active(20, "queued", job=job)
    others = [aged(9, job=other) for _ in range(5)]

    result = purge()

    assert result.executions == 3
    remaining = set(Execution.objects.filter(job=job).values_list("pk", flat=True))
    assert remaining == {e.pk for e in finished[3:]} | {running.pk, queued.pk}
    assert all(exists(e) for e in others)


def test_retention_count_works_across_batches_and_skips_active_runs():
    job = JobFactory(retention_count=3)
    worker = WorkerFactory()
    executions = []
    for i in range(9):
        if i in (6, 8):  # among the newest: they do not count as finished
            executions.append(active(10 - i, "running", job=job, worker=worker))
        else:
            executions.append(aged(10 - i, job=job))

    assert purge(batch_size=2, dry_run=True).executions == 4
    assert purge(batch_size=2).executions == 4
    remaining = set(Execution.objects.filter(job=job).values_list("pk", flat=True))
    assert remaining == {executions[i].pk for i in (4, 5, 6, 7, 8)}


def test_age_and_count_together_count_each_execution_once():
    job = JobFactory(retention_days=10, retention_count=2)
    [aged(days, job=job) for days in (20, 15, 8, 6, 4, 2)]

    dry = purge(dry_run=True)
    real = purge()

    assert dry.executions == real.executions == 4
    assert Execution.objects.filter(job=job).count() == 2


def test_queued_and_running_executions_are_never_deleted_however_old():
    job = JobFactory(retention_days=1, retention_count=1)
    worker = WorkerFactory()
    keep = [
        active(1000, "queued", job=None),
        active(1000, "running", job=None, worker=worker),
        active(1000, "queued", job=job),
        active(1000, "running", job=job, worker=worker),
    ]
    aged(1000, job=job)

    purge()
    purge(older_than=timedelta(seconds=1))

    assert all(exists(e) for e in keep)
    assert Execution.objects.count() == len(keep)


def test_the_delete_itself_refuses_an_active_execution():
    running = active(100, "running", worker=WorkerFactory())

    assert retention.executions_delete_batch(ids=[running.pk]) == (0, 0)
    assert exists(running)


def test_older_than_replaces_the_global_and_the_jobs_retention_days():
    job = JobFactory(retention_days=365)
    gone = [aged(8, job=job), aged(8, job=None), aged(8)]
    kept = [aged(6, job=job), aged(6, job=None)]

    assert purge(older_than=timedelta(days=7)).executions == 3
    assert not any(exists(e) for e in gone)
    assert all(exists(e) for e in kept)


# -- what goes with them ------------------------------------------------------------------


def test_logs_are_deleted_with_their_executions_and_counted():
    old, young = aged(31), aged(1)
    for seq in range(3):
        ExecutionLogFactory(execution=old, seq=seq)
        ExecutionLogFactory(execution=young, seq=seq)

    result = purge()

    assert (result.executions, result.logs) == (1, 3)
    assert not ExecutionLog.objects.filter(execution_id=old.pk).exists()
    assert ExecutionLog.objects.filter(execution_id=young.pk).count() == 3


def test_a_retry_survives_its_purged_original_and_forgets_it():
    original = aged(40, status="failed", exit_code=1)
    retry = aged(1, retry_of=original, attempt=2)

    purge()

    assert not exists(original)
    retry.refresh_from_db()
    assert retry.retry_of_id is None
    assert retry.attempt == 2


def test_a_queued_retry_of_a_purged_execution_stays_queued():
    original = aged(40, status="lost")
    retry = active(40, "queued", retry_of=original, attempt=2)

    purge()

    assert not exists(original)
    retry.refresh_from_db()
    assert (retry.status, retry.retry_of_id) == ("queued", None)


def test_a_whole_retry_chain_goes_in_one_batch():
    first = aged(50, status="failed", exit_code=1)
    second = aged(49, status="failed", exit_code=1, retry_of=first, attempt=2)
    aged(48, retry_of=second, attempt=3)

    assert purge(batch_size=10).executions == 3
    assert not Execution.objects.exists()


def test_schedule_history_keeps_its_rows_when_their_execution_is_purged():
    schedule = ScheduleFactory()
    old, young = aged(31, job=schedule.job), aged(1, job=schedule.job)
    fire_old = ScheduleFire.objects.create(
        schedule=schedule, slot_at=old.created_at, outcome="fired", execution=old
    )
    fire_young = ScheduleFire.objects.create(
        schedule=schedule, slot_at=young.created_at, outcome="fired", execution=young
    )

    purge()

    fire_old.refresh_from_db()
    fire_young.refresh_from_db()
    assert fire_old.execution_id is None
    assert fire_young.execution_id == young.pk


# -- how: batches, budget, dry run -----------------------------------------------------


def test_it_works_in_batches_and_reports_progress_after_each():
    for i in range(5):
        ExecutionLogFactory(execution=aged(40 + i), seq=0)
    seen = []

    result = purge(batch_size=2, progress=seen.append)

    assert [(r.batches, r.executions, r.logs) for r in seen] == [(1, 2, 2), (2, 4, 4), (3, 5, 5)]
    assert seen[-1] == result
    assert result.batches == 3


def test_a_batch_costs_the_same_queries_whatever_its_size():
    def queries_for(count: int) -> int:
        schedule = ScheduleFactory()
        previous = None
        for i in range(count):
            previous = aged(40 + i, job=schedule.job, retry_of=previous)
            ExecutionLogFactory(execution=previous, seq=0)
            ScheduleFire.objects.create(
                schedule=schedule, slot_at=previous.created_at, outcome="fired", execution=previous
            )
        with CaptureQueriesContext(connection) as ctx:
            assert purge(batch_size=100).executions == count
        return len(ctx.captured_queries)

    assert queries_for(3) == queries_for(60)


def test_the_time_budget_stops_after_a_batch_and_the_next_run_carries_on():
    for i in range(5):
        aged(40 + i)

    first = purge(batch_size=2, max_seconds=0)
    rest = purge(batch_size=2)

    assert (first.executions, first.complete) == (2, False)
    assert (rest.executions, rest.complete) == (3, True)


def test_the_time_budget_also_holds_between_jobs():
    for _ in range(2):
        aged(10, job=JobFactory(retention_days=5))

    first = purge(max_seconds=0)

    assert (first.executions, first.complete) == (1, False)
    assert purge().executions == 1


def test_kept_rows_do_not_hide_old_ones_behind_them():
    # A job keeping a year fills the oldest part of the created_at index; the walk steps
    # over it (window after window) and still reaches what is due behind it.
    keeper = JobFactory(retention_days=365)
    kept = [aged(300 - i, job=keeper) for i in range(7)]
    due = [aged(100 - i) for i in range(3)]

    assert purge(batch_size=2).executions == 3
    assert not any(exists(e) for e in due)
    assert all(exists(e) for e in kept)


def test_a_dry_run_deletes_nothing_and_reports_what_a_run_would():
    job = JobFactory(retention_count=1)
    for days in (40, 35, 3, 2):
        ExecutionLogFactory(execution=aged(days, job=job), seq=0)
        ExecutionLogFactory(execution=aged(days, job=None), seq=0)
    before = Execution.objects.count(), ExecutionLog.objects.count()

    dry = purge(dry_run=True, batch_size=2)

    assert (Execution.objects.count(), ExecutionLog.objects.count()) == before
    assert dry.dry_run
    real = purge(batch_size=2)
    assert (dry.executions, dry.logs) == (real.executions, real.logs) == (5, 5)


def test_rows_of_the_same_instant_are_each_counted_once_across_batches():
    # The cursor is (created_at, id): ties on created_at are split by id, not skipped.
    for _ in range(5):
        aged(40)

    assert purge(dry_run=True, batch_size=2).executions == 5
    assert purge(batch_size=2).executions == 5


def test_it_rejects_a_nonsensical_request():
    with pytest.raises(InvalidInput):
        purge(batch_size=0)
    with pytest.raises(InvalidInput):
        purge(older_than=timedelta(0))


@pytest.mark.postgres
def test_a_second_purge_at_once_is_refused_but_a_dry_run_is_not():
    old = aged(40)
    other = psycopg.connect(database_url_from_settings(connection.settings_dict), autocommit=True)
    try:
        other.execute("SELECT pg_advisory_lock(%s)", [retention.PURGE_LOCK_KEY])
        with pytest.raises(retention.PurgeRunning):
            purge()
        assert tasks.purge_executions() == "another purge is running"
        assert purge(dry_run=True).executions == 1
        other.execute("SELECT pg_advisory_unlock(%s)", [retention.PURGE_LOCK_KEY])
    finally:
        other.close()

    assert purge().executions == 1
    assert not exists(old)


# -- the periodic task and the command -------------------------------------------------


def test_the_periodic_task_purges_and_says_how_much():
    aged(31)
    ExecutionLogFactory(execution=aged(32), seq=0)

    summary = tasks.purge_executions()

    assert summary.startswith("deleted 2 execution(s) and 1 log row(s) in 1 batch(es)")
    assert not Execution.objects.exists()


def test_the_periodic_task_is_registered_by_name_after_migrate():
    QSchedule.objects.filter(name="hodei.purge_executions").delete()

    call_command("migrate", verbosity=0)

    schedule = QSchedule.objects.get(name="hodei.purge_executions")
    assert schedule.func == "workermanager.tasks.purge_executions"
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        QSchedule.MINUTES,
        10,
        -1,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("90m", timedelta(minutes=90)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        (" 3 d ", timedelta(days=3)),
    ],
)
def test_older_than_accepts_a_number_and_a_unit(text, expected):
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["7", "d", "7x", "7days", "-1d", "1.5d", "0d", "", "7d2h"])
def test_older_than_rejects_anything_else(text):
    with pytest.raises(CommandError, match="--older-than"):
        parse_age(text)


def test_the_command_rejects_a_bad_age_before_touching_anything():
    old = aged(40)

    with pytest.raises(CommandError, match="--older-than '7 days'"):
        call_command("purge_executions", "--older-than", "7 days", stdout=StringIO())
    with pytest.raises(CommandError, match="--batch-size"):
        call_command("purge_executions", "--batch-size", "0", stdout=StringIO())
    assert exists(old)


def run_command(*args) -> list[str]:
    out = StringIO()
    call_command("purge_executions", *args, stdout=out)
    return out.getvalue().splitlines()


def test_the_command_purges_older_than_and_shows_its_progress():
    gone = [aged(10 - i) for i in range(3)]  # oldest first: the first batch has gone[0]
    ExecutionLogFactory(execution=gone[0], seq=0)
    ExecutionLogFactory(execution=gone[0], seq=1)
    kept = aged(6)

    lines = run_command("--older-than", "7d", "--batch-size", "2")

    assert lines[0] == "Purging finished executions older than 7d, 2 per batch."
    assert lines[1].startswith("batch 1: deleted 2 executions, 2 log rows, ")
    assert lines[1].endswith(" executions/s")
    assert lines[-1].startswith("Done: deleted 3 execution(s) and 2 log row(s) in 2 batch(es)")
    assert not any(exists(e) for e in gone)
    assert exists(kept)


def test_the_command_dry_run_counts_and_keeps_everything():
    ExecutionLogFactory(execution=aged(31), seq=0)
    aged(31, status=ExecutionStatus.FAILED, exit_code=2)

    lines = run_command("--dry-run")

    assert lines[0] == (
        "Purging finished executions past retention (default 30 days, or the job's own), "
        "1000 per batch (dry run: nothing is deleted)."
    )
    assert lines[1].startswith("batch 1: would delete 2 executions, 1 log rows")
    assert lines[-1].startswith("Done: would delete 2 execution(s) and 1 log row(s)")
    assert Execution.objects.count() == 2


def test_the_command_shows_every_batch_with_v2_and_only_the_summary_with_v0():
    for i in range(3):
        aged(40 + i)

    every = run_command("--batch-size", "1", "--dry-run", "-v", "2")
    quiet = run_command("--batch-size", "1", "-v", "0")

    assert [line.split(":")[0] for line in every[1:4]] == ["batch 1", "batch 2", "batch 3"]
    assert all(line.endswith(" ms)") for line in every[1:4])
    assert quiet == [quiet[0]]
    assert quiet[0].startswith("Done: deleted 3 execution(s)")
