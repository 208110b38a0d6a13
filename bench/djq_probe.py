"""The task of the plain django-q2 baseline in bench/bench_scheduling.py.

Each baseline schedule is a django-q2 CRON Schedule whose function is ``record``;
django-q2 passes the slot it stands for as ``intended`` (the Schedule's
``intended_date_kwarg``), and ``record`` writes one row: which schedule, which slot, and
when the task started running. Its lag (ran_at - intended) is the plain django-q2
counterpart of Hodei's ScheduleFire.fired_at - slot_at (both are taken when the firing
function starts). No unique constraint: a slot run twice shows up as two rows.

The cluster imports it as ``bench.djq_probe`` (the project root is on its sys.path:
manage.py's directory, and PYTHONPATH set by the benchmark)."""

import os
from datetime import datetime

from django.db import connection
from django.utils import timezone

TABLE = "bench_djq_probe"

CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    intended timestamptz,
    ran_at timestamptz NOT NULL,
    pid integer NOT NULL
)"""


def record(name: str, intended: str | None = None, **_kwargs) -> str:
    ran_at = timezone.now()
    slot = datetime.fromisoformat(intended) if intended else None
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (name, intended, ran_at, pid) VALUES (%s, %s, %s, %s)",
            [name, slot, ran_at, os.getpid()],
        )
    return f"{name} {intended}"
