"""django-q2 entry points: wake-up calls that take no domain state and call one service.
Safe to run twice, or on several qcluster processes at once."""

from workermanager import services


def maintain_workers() -> str:
    """Fail overdue executions of silent workers, then reap dead workers (their running
    executions become lost and are retried under the infrastructure budget)."""
    expired = services.execution_expire_overdue()
    reaped = services.worker_reap()
    return f"expired {len(expired)} execution(s), reaped {len(reaped)} worker(s)"
