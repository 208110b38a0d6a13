"""The worker registry: agents register, heartbeat and go offline; silent ones are reaped.

Used by both agent transports (database and HTTP), the scheduler's worker API and the
maintenance task."""

import socket
from datetime import datetime

from django.db import IntegrityError, transaction

from hodei.lib import clock
from hodei.lib.ids import uuid7
from workermanager import outbox, services
from workermanager.choices import LIVE_WORKER_STATUSES, Isolation, WorkerStatus
from workermanager.models import Worker
from workermanager.notify import notify_registered


def worker_register(
    *,
    type: str,
    name: str = "",
    labels: dict | None = None,
    capacity: int = 1,
    hostname: str = "",
    version: str = "",
    pid: int | None = None,
    isolation: str = Isolation.NONE,
) -> tuple[Worker, bool]:
    """Register a worker, or re-register the one of the same name (an agent restarted
    under its name keeps its row and history). Returns (worker, created)."""
    now = clock.now()
    name = name or f"{type}-{uuid7().hex[-12:]}"
    values = {
        "type": type,
        "labels": labels or {},
        "capacity": capacity,
        "hostname": hostname or socket.gethostname(),
        "version": version,
        "pid": pid,
        "isolation": isolation,
        "status": WorkerStatus.ONLINE,
        "registered_at": now,
        "last_heartbeat_at": now,
        "stopped_at": None,
    }
    try:
        with transaction.atomic():
            worker, created = Worker.objects.update_or_create(name=name, defaults=values)
            outbox.worker_event(worker, "online")
            notify_registered(name)
    except IntegrityError:
        # Two registrations of one name raced; the other one created the row.
        with transaction.atomic():
            worker, created = Worker.objects.update_or_create(name=name, defaults=values)[0], False
            outbox.worker_event(worker, "online")
            notify_registered(name)
    return worker, created


@transaction.atomic
def workers_reap(*, now: datetime | None = None) -> list[Worker]:
    """Mark workers that missed their heartbeats offline and their running executions
    lost (each then retried under the infrastructure budget). Safe to run anywhere, any
    number of times at once: rows are locked and transitions are conditional."""
    now = now or clock.now()
    # SKIP LOCKED: a reaper running concurrently takes other rows, not these again.
    dead = list(
        Worker.objects.select_for_update(skip_locked=True)
        .filter(status__in=LIVE_WORKER_STATUSES, last_heartbeat_at__lt=now - services.silence())
        .order_by("id")
    )
    for worker in dead:
        worker.go_offline(now=now)
        outbox.worker_event(worker, "lost", reason="It stopped heartbeating.")
        services.executions_lose(
            worker=worker, now=now, reason=f"Worker {worker.name} stopped heartbeating."
        )
    return dead
