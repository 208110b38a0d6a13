"""django-q2 entry points: wake-up calls that take no domain state and call one service.
Safe to run twice, or on several qcluster processes at once."""

from workermanager import managed, pools, retention, services, workers

# django-q2 kills a task after 60 s (Q_CLUSTER["timeout"]): a run stops well before, and
# the next one (every 10 minutes) carries on where it stopped.
PURGE_SECONDS_PER_RUN = 30.0


def maintain_workers() -> str:
    """Time out overdue executions of silent workers, reap dead workers (their running
    executions become lost and are retried under the infrastructure budget), reconcile
    managed workers with their processes, and worker pools with their demand."""
    overdue = services.executions_expire_overdue()
    unclaimed = services.executions_expire_unclaimed()
    reaped = workers.workers_reap()
    failed = managed.managed_workers_reconcile()
    # Each qcluster reconciles the pools every few seconds; this is the fallback (a
    # cluster started with --no-ticker).
    scaled = pools.pools_reconcile()
    return (
        f"timed out {len(overdue)} execution(s), expired {len(unclaimed)} unclaimed, "
        f"reaped {len(reaped)} worker(s), {failed} managed worker(s) found dead; {scaled}"
    )


def purge_executions() -> str:
    """Delete finished executions (and their logs) past their retention, in batches."""
    try:
        result = retention.executions_purge(max_seconds=PURGE_SECONDS_PER_RUN)
    except retention.PurgeRunning:
        return "another purge is running"
    return str(result)
