"""Pieces the admin modules share: a paginator that never counts huge tables, badges."""

from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property
from django.utils.html import format_html

from hodei.dashboard import STATUS_COLOURS

COUNT_LIMIT = 10_000


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_LIMIT + 1 rows, so a page of a 10^6-row table costs a bounded
    index scan, not a full COUNT(*). Past the cap the admin shows the last page as the
    one at the cap; filters and search narrow further."""

    @cached_property
    def count(self) -> int:
        query = self.object_list
        try:
            return query.order_by()[: COUNT_LIMIT + 1].count()
        except (AttributeError, TypeError):
            return len(query)


def estimated_rows(model) -> int | None:
    """PostgreSQL's estimate of a table's rows (pg_class.reltuples), for headings."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
            [model._meta.db_table],
        )
        row = cursor.fetchone()
    return row[0] if row and row[0] >= 0 else None


def status_badge(status: str):
    return format_html(
        '<span class="hodei-badge" style="background:{}">{}</span>',
        STATUS_COLOURS.get(status, "#8a8f98"),
        status,
    )
