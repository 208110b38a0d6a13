"""Cron expressions evaluated in a timezone, with the usual cron behaviour across DST.

We evaluate the expression on the wall clock of the schedule's timezone, then map each
wall-clock time to an instant:
- a wall time that happens twice (clocks go back) fires once, at its first occurrence;
- a wall time that never happens (clocks jump forward) fires once, when the jump ends
  (02:30 on the night clocks jump from 02:00 to 03:00 fires at 03:00), and slots that
  collapse onto the same instant fire once.
So a daily 02:30 job runs exactly once on both DST nights, as Vixie cron does.

Five fields (minute hour day month weekday) are standard; a sixth, leading field of
seconds is accepted (``*/10 * * * * *``)."""

from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

MAX_CRON_LENGTH = 200


class CronError(ValueError):
    pass


# In the tz database's directory but not zones: "localtime" is this host's own setting
# (so it would mean something else on every host), "Factory" a placeholder.
NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})


@cache
def _known_timezones() -> frozenset[str]:
    return (frozenset(available_timezones()) | {"UTC"}) - NOT_ZONES


def parse_timezone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or name not in _known_timezones():
        raise CronError(f"Unknown timezone {name!r}; use an IANA name such as 'Europe/Madrid'.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"Unknown timezone {name!r}.") from None


def has_seconds(expr: str) -> bool:
    return len(expr.split()) == 6


def validate_cron(expr: str) -> str:
    """Return the normalised expression, or raise CronError saying what is wrong."""
    if not isinstance(expr, str) or not expr.strip():
        raise CronError("A cron expression is required.")
    expr = " ".join(expr.split())
    if len(expr) > MAX_CRON_LENGTH:
        raise CronError(f"A cron expression is at most {MAX_CRON_LENGTH} characters.")
    if expr.startswith("@"):
        aliases = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
        if expr not in aliases:
            raise CronError(f"Unsupported alias {expr!r}; use one of {', '.join(sorted(aliases))}.")
    elif len(expr.split()) not in (5, 6):
        raise CronError(
            "A cron expression has 5 fields (minute hour day-of-month month day-of-week), "
            "or 6 with a leading seconds field."
        )
    try:
        croniter(expr, datetime(2000, 1, 1), second_at_beginning=has_seconds(expr))
    except (CroniterBadCronError, ValueError, KeyError, TypeError) as exc:
        raise CronError(f"Invalid cron expression {expr!r}: {exc}") from None
    try:
        next_fire_times(expr, "UTC", after=datetime(2000, 1, 1, tzinfo=UTC), count=1)
    except CronError:
        raise
    return expr


def next_fire_times(expr: str, tz_name: str, *, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire instants strictly after ``after``, as aware UTC datetimes."""
    tz = parse_timezone(tz_name)
    local_after = after.astimezone(tz).replace(tzinfo=None)
    # Start one second early so a wall time equal to `after` in a repeated hour is seen.
    iterator = croniter(
        expr, local_after - timedelta(seconds=1), second_at_beginning=has_seconds(expr)
    )
    out: list[datetime] = []
    last: datetime | None = None
    guard = 0
    while len(out) < count:
        guard += 1
        if guard > count * 50 + 100:
            break
        try:
            wall = iterator.get_next(datetime)
        except CroniterBadDateError:
            if not out:
                raise CronError(f"Cron expression {expr!r} never fires.") from None
            break
        instant = _wall_to_instant(wall, tz)
        if instant <= after or (last is not None and instant <= last):
            continue
        out.append(instant)
        last = instant
    return out


def previous_fire_time(expr: str, tz_name: str, *, at_or_before: datetime) -> datetime | None:
    """The latest fire instant at or before ``at_or_before`` (aware UTC), or None."""
    tz = parse_timezone(tz_name)
    local = at_or_before.astimezone(tz).replace(tzinfo=None)
    iterator = croniter(expr, local + timedelta(seconds=1), second_at_beginning=has_seconds(expr))
    for _ in range(4):  # a wall time in a gap or a repeated hour: step back again
        try:
            wall = iterator.get_prev(datetime)
        except CroniterBadDateError:
            return None
        instant = _wall_to_instant(wall, tz)
        if instant <= at_or_before:
            return instant
    return None


def _wall_to_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    aware = wall.replace(tzinfo=tz, fold=0)
    if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
        return aware.astimezone(UTC)
    # In a gap: fire when the gap ends, at the first wall-clock minute that exists.
    probe = wall.replace(second=0, microsecond=0)
    for _ in range(24 * 60):
        probe += timedelta(minutes=1)
        candidate = probe.replace(tzinfo=tz, fold=0)
        if candidate.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == probe:
            return candidate.astimezone(UTC)
    return aware.astimezone(UTC)
