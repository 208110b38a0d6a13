"""Follow an execution's log from the terminal until it ends (``execute --follow``,
``tail``): the same pages as the logs API (workermanager.selectors), read straight from
the database."""

import re
import time
from collections.abc import Callable

from workermanager.choices import LogStream
from workermanager.models import Execution
from workermanager.selectors import execution_log_page

POLL_SECONDS = 0.2

# A command's output may carry any terminal control sequence: titles (OSC), screen
# clears, cursor moves, even sequences some terminals answer to. Only SGR (colours,
# bold: ESC [ ... m) is passed to a terminal; everything else is removed.
_ESCAPE = re.compile(
    r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]"  # CSI: ESC [ params final
    r"|\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: ESC ] ... BEL or ST
    r"|[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|.?)",  # any other escape, or a lone ESC
    re.DOTALL,
)
_SGR = re.compile(r"\x1b\[[0-9;]*m")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f\x80-\x9f]")


def terminal_safe(text: str, *, colours: bool) -> str:
    """``text`` without control sequences other than colours (none at all unless
    ``colours``) and without other control characters (tabs and newlines stay)."""

    def keep(match: re.Match) -> str:
        return match[0] if colours and _SGR.fullmatch(match[0]) else ""

    return _CONTROL.sub("", _ESCAPE.sub(keep, text))


def follow(execution: Execution, *, emit: Callable[[str, str], None]) -> Execution:
    """Call ``emit(stream, text)`` for each chunk in order until the execution ends."""
    offset = 0
    while True:
        page = execution_log_page(execution, offset=offset)
        for chunk in page.chunks:
            emit(chunk.stream, chunk.message)
        offset = page.next_offset
        if page.complete:
            return execution
        if not page.chunks:
            time.sleep(POLL_SECONDS)


def follow_and_report(command, execution: Execution) -> Execution:
    """Follow ``execution`` on a management command's stdout/stderr, then say how it
    ended on stderr."""

    def emit(stream: str, text: str) -> None:
        target = command.stderr if stream == LogStream.STDERR else command.stdout
        target.write(terminal_safe(text, colours=target.isatty()), ending="")
        target.flush()

    execution = follow(execution, emit=emit)
    suffix = f" ({execution.error})" if execution.error else ""
    command.stderr.write(
        f"execution {execution.id} {execution.status}, exit code {execution.exit_code}{suffix}"
    )
    return execution


def exit_status(execution: Execution) -> int:
    """The shell exit status that stands for an outcome."""
    if execution.exit_code is not None and execution.status != "timed_out":
        return execution.exit_code if 0 <= execution.exit_code < 256 else 1
    return {"succeeded": 0, "timed_out": 124, "cancelled": 130}.get(execution.status, 1)
