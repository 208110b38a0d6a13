"""Follow an execution's log from the terminal until it ends (``execute --follow``,
``tail``): the same offset protocol as the logs API, read straight from the database."""

import time
from collections.abc import Callable

from workermanager.choices import TERMINAL
from workermanager.models import Execution

POLL_SECONDS = 0.2


def follow(execution: Execution, *, emit: Callable[[str, str], None]) -> Execution:
    """Call ``emit(stream, text)`` for each chunk in order until the execution ends."""
    offset = 0
    while True:
        execution.refresh_from_db(fields=["status", "exit_code", "error"])
        # Status first: once it is terminal, every chunk is already stored.
        done = execution.status in TERMINAL
        chunks = list(execution.logs.filter(seq__gte=offset).order_by("seq")[:1000])
        for chunk in chunks:
            emit(chunk.stream, chunk.message)
        if chunks:
            offset = chunks[-1].seq + 1
        if done and len(chunks) < 1000:
            return execution
        if not chunks:
            time.sleep(POLL_SECONDS)


def exit_status(execution: Execution) -> int:
    """The shell exit status that stands for an outcome."""
    if execution.exit_code is not None and execution.status != "timed_out":
        return execution.exit_code if 0 <= execution.exit_code < 256 else 1
    return {"succeeded": 0, "timed_out": 124, "cancelled": 130}.get(execution.status, 1)
