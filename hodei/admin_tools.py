"""Pieces every app's admin shares: a paginator that never counts huge tables, and the
status palette (its pills are hodei.templatetags.hodei.status_pill)."""

from collections.abc import Callable, Iterable

from django.contrib import messages
from django.core.paginator import Paginator
from django.urls import path
from django.utils.functional import cached_property

from hodei.exceptions import HodeiError

COUNT_LIMIT = 10_000

# Status colours shared by every badge, the dashboard legend and its chart.
STATUS_COLOURS = {
    "queued": "#8a8f98",
    "running": "#2f80ed",
    "succeeded": "#27ae60",
    "failed": "#eb5757",
    "timed_out": "#f2994a",
    "cancelled": "#9b51e0",
    "lost": "#4f4f4f",
    "pending": "#c4c8cf",
    "skipped": "#c4c8cf",
    "expired": "#a0522d",
    # Managed workers and schedules reuse the palette.
    "starting": "#8a8f98",
    "stopping": "#f2994a",
    "stopped": "#8a8f98",
    "scheduled": "#2f80ed",
    "paused": "#f2994a",
    "completed": "#27ae60",
    "online": "#27ae60",
    "draining": "#f2994a",
    "offline": "#8a8f98",
    # Dead-man alerting of schedules.
    "up": "#27ae60",
    "down": "#eb5757",
    "unknown": "#8a8f98",
}


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


def apply_each(
    model_admin,
    request,
    objects: Iterable,
    operation: Callable,
    *,
    done: str,
    label: Callable | None = None,
) -> int:
    """An admin action's loop: ``operation(obj)`` for each object; one it does not apply
    to (a HodeiError: an illegal move, say) is reported with its reason and changed in
    nothing; then ``done`` ("{count} worker(s) drained.") once. Returns the count."""
    count = 0
    for obj in objects:
        try:
            operation(obj)
            count += 1
        except HodeiError as exc:
            text = f"{label(obj)}: {exc.message}" if label else exc.message
            model_admin.message_user(request, text, messages.WARNING)
    if count:
        model_admin.message_user(request, done.format(count=count), messages.SUCCESS)
    return count


def object_urls(model_admin, views: Iterable[tuple[str, Callable, str]]) -> list:
    """A ModelAdmin's own pages, ``(route, view, name)``, behind the admin's login and
    named ``admin:<app>_<model>_<name>``: put them before ``super().get_urls()``."""
    prefix = f"{model_admin.opts.app_label}_{model_admin.opts.model_name}"
    return [
        path(route, model_admin.admin_site.admin_view(view), name=f"{prefix}_{name}")
        for route, view, name in views
    ]


def time_column(field: str, description: str, *, compact: bool = False, sortable: bool = False):
    """A list or detail column showing the datetime ``field`` as every admin shows times
    (``moment``: seconds, timezone, "3 min ago" on hover), sortable by it if asked."""
    from django.contrib import admin

    from hodei.templatetags.hodei import moment

    @admin.display(description=description, ordering=field if sortable else None)
    def column(model_admin, obj):
        return moment(getattr(obj, field), compact=compact)

    return column


def link_column(field: str, description: str, *, ordering: str | None = None, show_id=False):
    """A column linking the object's foreign key ``field`` to that object's admin page
    (its name, or its id with ``show_id``); "–" when it is empty."""
    from django.contrib import admin
    from django.urls import reverse
    from django.utils.html import format_html

    @admin.display(description=description, ordering=ordering)
    def column(model_admin, obj):
        pk = getattr(obj, f"{field}_id")
        if pk is None:
            return "–"
        meta = obj._meta.get_field(field).related_model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[pk])
        return format_html('<a href="{}">{}</a>', url, pk if show_id else getattr(obj, field))

    return column


def uuid_or_404(value):
    """An object id from a URL of the admin's own views: a UUID, or a 404."""
    import uuid

    from django.http import Http404

    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Http404 from None


def latest_formset(*order_by: str, rows: int):
    """An inline's formset that shows the parent's newest ``rows`` rows only (a schedule
    firing every second has millions). Sliced here, after the formset has filtered by
    the parent: sliced in the inline's get_queryset, the newest rows would be those of
    every parent."""
    from django import forms

    class LatestFormSet(forms.BaseInlineFormSet):
        def get_queryset(self):
            if not hasattr(self, "_latest"):
                self._latest = super().get_queryset().order_by(*order_by)[:rows]
            return self._latest

    return LatestFormSet
