"""System checks that read the worker registry (``manage.py check --database default``)."""

from django.core.checks import Tags, Warning, register
from django.db import connections

from workermanager.choices import LIVE_WORKER_STATUSES
from workermanager.models import Worker


@register(Tags.database)
def check_sqlite_agents(app_configs, databases=None, **kwargs):
    """SQLite serialises every write: fine for `make run`'s one local agent, not for a
    fleet (claims queue behind each other, and there is no LISTEN/NOTIFY)."""
    if not databases or connections["default"].vendor != "sqlite":
        return []
    try:
        live = Worker.objects.filter(status__in=LIVE_WORKER_STATUSES).count()
    except Exception:  # not migrated yet
        return []
    if live > 1:
        return [
            Warning(
                f"{live} agents are online against an SQLite database.",
                hint="Use PostgreSQL (DATABASE_URL) for more than one agent.",
                id="hodei.W004",
            )
        ]
    return []
