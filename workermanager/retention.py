"""Retention: finished executions and their logs are deleted once they are past their
job's ``retention_days`` (else ``HODEI_RETENTION_DAYS``) or beyond their job's
``retention_count``. Queued and running executions are never deleted, however old.

The purge works in small batches, each its own short transaction (its logs, then the
executions), so it holds row locks for milliseconds and never blocks the API. Every batch
query walks an index from a keyset cursor, never from the start of the table: rows that
are kept (active, or under a longer retention) and rows deleted but not yet vacuumed are
stepped over once per run, not once per batch.

- ``by job age``: jobs whose ``retention_days`` is shorter than the global retention,
  one by one, on the (job, -id) index, up to the id of the cutoff (ids are UUIDv7, so
  they sort by creation time);
- ``by count``: jobs with a ``retention_count``, on the same index, up to the newest
  finished execution beyond the N kept (newest by id);
- ``by age``: everything else, on the ``created_at`` index up to the global cutoff; a row
  of a job with a longer retention is checked against its own cutoff.

An execution is past an age retention when it was created and finished before the cutoff.
"""

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction

from hodei.exceptions import Conflict, InvalidInput
from hodei.lib import clock
from orchestrator.models import Job
from workermanager.choices import TERMINAL
from workermanager.models import Execution, ExecutionLog

# pg_try_advisory_lock key of a running purge ("hodeiprg"): two purges at once would only
# race for the same rows (and could deadlock on them).
PURGE_LOCK_KEY = 0x686F646569707267
DELETE_ATTEMPTS = 3


@dataclass(frozen=True)
class PurgeResult:
    """How much a purge deleted (a dry run: would delete), so far or in all."""

    executions: int = 0
    logs: int = 0
    batches: int = 0
    elapsed_seconds: float = 0.0
    dry_run: bool = False
    complete: bool = True  # False when the time budget ran out first

    @property
    def executions_per_second(self) -> float:
        return self.executions / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def __str__(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        rest = "" if self.complete else "; stopped at the time budget, more to do"
        return (
            f"{verb} {self.executions} execution(s) and {self.logs} log row(s) in "
            f"{self.batches} batch(es), {self.elapsed_seconds:.1f} s "
            f"({self.executions_per_second:.0f} executions/s){rest}"
        )


class PurgeRunning(Conflict):
    code = "purge_running"


class _Row(NamedTuple):
    id: UUID
    created_at: datetime
    finished_at: datetime | None
    job_id: UUID | None
    status: str


_ROW_FIELDS = _Row._fields


def executions_purge(
    *,
    older_than: timedelta | None = None,
    now: datetime | None = None,
    batch_size: int = 1000,
    dry_run: bool = False,
    max_seconds: float | None = None,
    progress: Callable[[PurgeResult], None] | None = None,
) -> PurgeResult:
    """Delete finished executions past retention, with their logs, ``batch_size`` at a
    time; ``progress`` is called after each batch with the totals so far.

    ``older_than`` replaces the age retention (the global one and every job's) for this
    run; each job's ``retention_count`` applies either way. ``max_seconds`` bounds the
    run: it stops after the batch that crosses it (``complete`` is then False), and the
    next run carries on, since deleted rows are gone. A dry run deletes nothing and
    reports what a run would delete."""
    if batch_size < 1:
        raise InvalidInput("batch_size must be at least 1.")
    if older_than is not None and older_than <= timedelta(0):
        raise InvalidInput("older_than must be a positive duration.")
    purge = _Purge(
        now=now or clock.now(),
        older_than=older_than,
        batch_size=batch_size,
        dry_run=dry_run,
        max_seconds=max_seconds,
        progress=progress,
    )
    # A dry run changes nothing, so it needs no exclusivity.
    with _exclusive(enabled=not dry_run):
        purge.run()
    return purge.result


class _Purge:
    """One run of :func:`executions_purge`: its cutoffs, its budget, its totals."""

    def __init__(self, *, now, older_than, batch_size, dry_run, max_seconds, progress):
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.progress = progress
        self.started = time.monotonic()
        self.deadline = self.started + max_seconds if max_seconds is not None else None
        self.result = PurgeResult(dry_run=dry_run)

        self.global_cutoff = now - (older_than or timedelta(days=settings.HODEI_RETENTION_DAYS))
        policies = (
            Job.objects.filter(
                models.Q(retention_days__isnull=False) | models.Q(retention_count__isnull=False)
            )
            .order_by()
            .values_list("id", "retention_days", "retention_count")
        )
        self.cutoffs: dict[UUID, datetime] = {}
        self.counts: dict[UUID, int] = {}
        for job_id, days, count in policies:
            if days is not None and older_than is None:
                self.cutoffs[job_id] = now - timedelta(days=days)
            if count is not None:
                self.counts[job_id] = count
        # Jobs keeping less than the global retention get a walk of their own: the global
        # walk covers only rows older than the global cutoff.
        self.early = {
            job_id: cutoff for job_id, cutoff in self.cutoffs.items() if cutoff > self.global_cutoff
        }

    def run(self) -> None:
        # Jobs one by one, then the rest; the budget is checked between jobs too, so that
        # many small jobs cannot keep a run going either.
        for job_id, cutoff in sorted(self.early.items()):
            if not self._purge_job_by_age(job_id, cutoff) or self._out_of_time():
                return
        for job_id, keep in sorted(self.counts.items()):
            if not self._purge_job_by_count(job_id, keep) or self._out_of_time():
                return
        self._purge_by_age()

    def is_expired(self, row: _Row) -> bool:
        cutoff = self.cutoffs.get(row.job_id, self.global_cutoff)
        return (
            row.status in TERMINAL
            and row.created_at < cutoff
            and (row.finished_at is None or row.finished_at < cutoff)
        )

    # -- the three walks: each returns False when the time budget ran out ----------------

    def _purge_job_by_age(self, job_id: UUID, cutoff: datetime) -> bool:
        return self._walk_job(job_id, up_to_id=_last_uuid7_of(cutoff), select=self.is_expired)

    def _purge_job_by_count(self, job_id: UUID, keep: int) -> bool:
        boundary = self._first_beyond_count(job_id, keep)
        if boundary is None:
            return True

        def beyond_count(row: _Row) -> bool:
            # Rows past their age retention belong to the age walks (one count per row in
            # a dry run, where nothing disappears between walks).
            return row.status in TERMINAL and not self.is_expired(row)

        return self._walk_job(job_id, up_to_id=boundary, select=beyond_count)

    def _first_beyond_count(self, job_id: UUID, keep: int) -> UUID | None:
        """The newest finished execution of the job past its ``keep`` newest finished
        ones, found newest first in windows of the (job, -id) index."""
        seen, cursor = 0, None
        while True:
            ids = list(job_newest_query(job_id=job_id, before_id=cursor, limit=self.batch_size))
            if not ids:
                return None
            finished = {row.id for row in rows_by_id(ids) if row.status in TERMINAL}
            for id in ids:
                if id in finished:
                    seen += 1
                    if seen > keep:
                        return id
            cursor = ids[-1]

    def _walk_job(self, job_id: UUID, *, up_to_id: UUID, select: Callable[[_Row], bool]) -> bool:
        cursor = None
        while True:
            ids = list(
                job_window_query(
                    job_id=job_id, after_id=cursor, up_to_id=up_to_id, limit=self.batch_size
                )
            )
            if not ids:
                return True
            doomed = [row.id for row in rows_by_id(ids) if select(row)]
            if doomed:
                self._apply(doomed)
            cursor = ids[-1]
            if len(ids) < self.batch_size:
                return True
            if self._out_of_time():
                return False

    def _purge_by_age(self) -> bool:
        cursor = None
        while True:
            rows = age_window(cutoff=self.global_cutoff, after=cursor, limit=self.batch_size)
            if not rows:
                return True
            # The window is every row in index order, kept ones too, so each batch reads
            # at most ``batch_size`` index entries whatever the data looks like.
            ids = [row.id for row in rows if row.job_id not in self.early and self.is_expired(row)]
            if ids:
                self._apply(ids)
            cursor = (rows[-1].created_at, rows[-1].id)
            if len(rows) < self.batch_size:
                return True
            if self._out_of_time():
                return False

    # -- batches ------------------------------------------------------------------------

    def _apply(self, ids: list[UUID]) -> None:
        if self.dry_run:
            executions = len(ids)
            logs = ExecutionLog.objects.filter(execution_id__in=ids).count()
        else:
            executions, logs = executions_delete_batch(ids=ids)
        self.result = replace(
            self.result,
            executions=self.result.executions + executions,
            logs=self.result.logs + logs,
            batches=self.result.batches + 1,
            elapsed_seconds=time.monotonic() - self.started,
        )
        if self.progress is not None:
            self.progress(self.result)

    def _out_of_time(self) -> bool:
        if self.deadline is None or time.monotonic() < self.deadline:
            return False
        self.result = replace(
            self.result, complete=False, elapsed_seconds=time.monotonic() - self.started
        )
        return True


def executions_delete_batch(*, ids: list[UUID]) -> tuple[int, int]:
    """Delete these executions, if finished, and their logs in one short transaction;
    returns (executions, log rows) deleted.

    The ORM's delete() also nulls ``retry_of`` of their retries and
    ``ScheduleFire.execution`` with one UPDATE each for the whole batch (SET_NULL), so a
    batch costs the same few statements whatever its size. If a row pointing at one of
    them was inserted meanwhile (a retry of an old execution, committed after our UPDATE),
    the deferred foreign key check fails at commit: the batch is simply done again."""
    for attempt in range(1, DELETE_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                logs, _ = ExecutionLog.objects.filter(execution_id__in=ids).delete()
                # status re-checked in the DELETE itself: whatever the caller selected, an
                # active execution is never deleted.
                doomed = Execution.objects.filter(id__in=ids, status__in=TERMINAL)
                # only("id"): the ORM loads the rows before deleting them; their ids do.
                _, per_model = doomed.only("id").delete()
            return per_model.get(Execution._meta.label, 0), logs
        except IntegrityError:
            if attempt == DELETE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


# -- batch queries (each on an index; see docs/benchmarks.md, "Retention") --------------


def age_window_query(*, cutoff: datetime, after: tuple[datetime, UUID] | None, limit: int):
    """The next ``limit`` executions created before ``cutoff``, in (created_at, id) order
    after the cursor ``after``: an index range scan on ``created_at``."""
    rows = Execution.objects.filter(created_at__lt=cutoff)
    if after is not None:
        created_at, last_id = after
        # created_at >= x bounds the index scan; the OR breaks ties on the same instant.
        rows = rows.filter(created_at__gte=created_at).filter(
            models.Q(created_at__gt=created_at) | models.Q(id__gt=last_id)
        )
    return rows.order_by("created_at", "id").values_list(*_ROW_FIELDS)[:limit]


def job_window_query(*, job_id: UUID, after_id: UUID | None, up_to_id: UUID, limit: int):
    """The ids of the job's next ``limit`` executions up to ``up_to_id``, after the cursor,
    oldest first. Ids only, so that the one plan that fits is an index-only scan of
    (job, -id): the primary key, read in order with the job as a filter, would wade
    through every other job's rows (and does, when the planner guesses the job's rows
    are many and early)."""
    ids = Execution.objects.filter(job_id=job_id, id__lte=up_to_id)
    if after_id is not None:
        ids = ids.filter(id__gt=after_id)
    return ids.order_by("id").values_list("id", flat=True)[:limit]


def job_newest_query(*, job_id: UUID, before_id: UUID | None, limit: int):
    """The ids of the job's ``limit`` newest executions before the cursor, newest first:
    an index-only scan of (job, -id)."""
    ids = Execution.objects.filter(job_id=job_id)
    if before_id is not None:
        ids = ids.filter(id__lt=before_id)
    return ids.order_by("-id").values_list("id", flat=True)[:limit]


def rows_by_id(ids: list[UUID]) -> list[_Row]:
    return [
        _Row(*values) for values in Execution.objects.filter(id__in=ids).values_list(*_ROW_FIELDS)
    ]


def age_window(**kwargs) -> list[_Row]:
    return [_Row(*values) for values in age_window_query(**kwargs)]


def _last_uuid7_of(at: datetime) -> UUID:
    """The greatest UUIDv7 of the millisecond ``at`` falls in: ids sort by creation, so
    every execution created before ``at`` has an id up to this one."""
    ms = int(at.timestamp() * 1000)
    return UUID(int=((ms + 1) << 80) - 1)


@contextmanager
def _exclusive(*, enabled: bool):
    """One purge at a time (a session-level advisory lock; SQLite serialises writers
    anyway). A second purge fails fast with PurgeRunning instead of racing the first."""
    if not enabled or connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [PURGE_LOCK_KEY])
        (locked,) = cursor.fetchone()
    if not locked:
        raise PurgeRunning("Another purge of executions is running; try again later.")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [PURGE_LOCK_KEY])
