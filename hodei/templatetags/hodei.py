from datetime import timedelta

from django import template

register = template.Library()


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
