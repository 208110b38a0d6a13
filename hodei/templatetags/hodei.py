from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django import template
from django.contrib.admin.templatetags.admin_list import date_hierarchy as django_date_hierarchy
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from hodei.admin_tools import STATUS_COLOURS

register = template.Library()


@register.simple_tag
def status_pill(status: str) -> SafeString:
    """The status pill of every list and page (the dashboard's palette)."""
    return format_html(
        '<span class="hodei-badge" data-status="{}" style="background:{}">{}</span>',
        status,
        STATUS_COLOURS.get(status, "#8a8f98"),
        status.replace("_", " "),
    )


def relative(value: datetime, *, now: datetime | None = None) -> str:
    """ "12 s ago", "3 min ago", "2 h ago", "in 5 min": how far from now."""
    now = now or timezone.now()
    seconds = (now - value).total_seconds()
    ahead, seconds = seconds < 0, abs(seconds)
    if seconds < 60:
        text = f"{int(seconds)} s"
    elif seconds < 3600:
        text = f"{int(seconds // 60)} min"
    elif seconds < 48 * 3600:
        text = f"{int(seconds // 3600)} h"
    else:
        text = f"{int(seconds // 86400)} d"
    return f"in {text}" if ahead else f"{text} ago"


def moment(value: datetime | None, *, tz: str | None = None, compact: bool = False) -> SafeString:
    """A moment as every page shows it: to the second, with its timezone (UTC unless
    ``tz``), how long ago, and the exact instant (milliseconds, weekday) on hover.
    ``compact`` (list columns): the date only when it is not today, "ago" below."""
    if value is None:
        return SafeString("–")
    zone = ZoneInfo(tz) if tz else UTC
    local = value.astimezone(zone)
    shown = local.strftime("%H:%M:%S")
    if not compact or local.date() != timezone.now().astimezone(zone).date():
        shown = local.strftime("%Y-%m-%d ") + shown
    return format_html(
        '<time class="hodei-time{}" datetime="{}" title="{}">{} {}<span class="hodei-ago">{}</span>'
        "</time>",
        " compact" if compact else "",
        value.astimezone(UTC).isoformat(),
        local.strftime("%A %Y-%m-%d %H:%M:%S.%f")[:-3] + f" {local.tzname()}",
        shown,
        local.tzname() or "",
        relative(value),
    )


@register.simple_tag
def hodei_time(value: datetime | None, tz: str | None = None) -> SafeString:
    return moment(value, tz=tz)


@register.filter
def hodei_ms(value: int | None) -> str:
    """A duration in milliseconds, as lists show it: 850 ms, 12.4 s, 3m 12s."""
    if value is None:
        return "–"
    if value < 10_000:
        return f"{value} ms"
    if value < 60_000:
        return f"{value / 1000:.1f} s"
    return hodei_duration(timedelta(milliseconds=value))


@register.filter
def hodei_duration(value: timedelta | None) -> str:
    """A short human duration: 4s, 3m 12s, 2h 5m, 3d 4h."""
    if value is None:
        return "–"
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


@register.inclusion_tag("admin/date_hierarchy.html")
def calendar_date_hierarchy(cl):
    """Django's date hierarchy, but its choices are the calendar between the oldest and
    the newest matching row, each found with one LIMIT 1 read on the time-ordered primary
    key (UUIDv7), instead of SELECT DISTINCT date_trunc(...) over every matching row and
    MIN/MAX(created_at), which the planner answers with a created_at index scan that
    filters out nearly every row when the filter matches only recent rows."""
    field = cl.date_hierarchy
    yf, mf, df = f"{field}__year", f"{field}__month", f"{field}__day"
    year, month, day = cl.params.get(yf), cl.params.get(mf), cl.params.get(df)
    if year and month and day:  # Django's last level runs no query
        return django_date_hierarchy(cl)

    def link(filters):
        return cl.get_query_string(filters, [f"{field}__"])

    rows = cl.queryset.values_list(field, flat=True)
    first, last = rows.order_by("pk").first(), rows.order_by("-pk").first()
    if first is None or last is None:
        return {"show": True, "back": None, "choices": []}
    first, last = timezone.localtime(first).date(), timezone.localtime(last).date()
    if not (year or month) and first.year == last.year:
        year = first.year
        if first.month == last.month:
            month = first.month
    if year and month:
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        return {
            "show": True,
            "back": {"link": link({yf: year}), "title": str(year)},
            "choices": [
                {
                    "link": link({yf: year, mf: month, df: d.day}),
                    "title": capfirst(formats.date_format(d, "MONTH_DAY_FORMAT")),
                }
                for d in days
            ],
        }
    if year:
        months = [date(int(year), m, 1) for m in range(first.month, last.month + 1)]
        return {
            "show": True,
            "back": {"link": link({}), "title": _("All dates")},
            "choices": [
                {
                    "link": link({yf: year, mf: m.month}),
                    "title": capfirst(formats.date_format(m, "YEAR_MONTH_FORMAT")),
                }
                for m in months
            ],
        }
    return {
        "show": True,
        "back": None,
        "choices": [
            {"link": link({yf: str(y)}), "title": str(y)} for y in range(first.year, last.year + 1)
        ],
    }
