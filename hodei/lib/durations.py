"""Durations as people type them on a command line: ``7d``, ``12h``, ``90d``, ``2w``."""

import re
from datetime import timedelta

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(value: str) -> timedelta:
    """``7d`` -> 7 days: a positive whole number and one unit of s, m, h, d or w.
    ValueError, saying what is expected, otherwise."""
    match = DURATION_RE.match(value or "")
    if not match:
        raise ValueError(
            f"{value!r}: give a whole number and a unit of s, m, h, d or w (such as 7d, 12h, 2w)."
        )
    amount, unit = int(match[1]), match[2]
    if amount == 0:
        raise ValueError(f"{value!r}: must be more than zero.")
    return timedelta(seconds=amount * UNIT_SECONDS[unit])
