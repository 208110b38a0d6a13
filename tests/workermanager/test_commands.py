"""The CLI: `tail` and `execute --follow` (short ids, a terminal that stays safe)."""

import os
import pty
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.factories import ExecutionFactory, ExecutionLogFactory
from workermanager.follow import terminal_safe

pytestmark = pytest.mark.django_db

NASTY = "title\x1b]0;owned\x07 clear\x1b[2J home\x1b[H bell\x07 \x1b[1;31mred\x1b[0m ok\n"


def test_only_colours_reach_a_terminal_and_nothing_else():
    assert terminal_safe(NASTY, colours=True) == "title clear home bell \x1b[1;31mred\x1b[0m ok\n"
    assert terminal_safe(NASTY, colours=False) == "title clear home bell red ok\n"
    assert terminal_safe("tab\tand\nnewline", colours=False) == "tab\tand\nnewline"


def finished_with(message: str):
    execution = ExecutionFactory(status="succeeded", exit_code=0)
    ExecutionLogFactory(execution=execution, seq=0, message=message)
    return execution


def test_tail_strips_control_sequences_when_not_a_terminal():
    execution = finished_with(NASTY)
    out, err = StringIO(), StringIO()
    with pytest.raises(SystemExit) as done:
        call_command("tail", str(execution.id), stdout=out, stderr=err)
    assert done.value.code == 0
    assert out.getvalue() == "title clear home bell red ok\n"


def test_tail_keeps_colours_for_a_terminal():
    execution = finished_with(NASTY)
    main, secondary = pty.openpty()
    with os.fdopen(secondary, "w") as terminal, pytest.raises(SystemExit):
        call_command("tail", str(execution.id), stdout=terminal, stderr=StringIO())
    shown = os.read(main, 65536).decode()
    os.close(main)
    assert "\x1b[1;31mred\x1b[0m" in shown and "\x1b]0;" not in shown and "\x1b[2J" not in shown


def test_tail_takes_the_short_id_and_says_when_it_is_ambiguous():
    execution = finished_with("hello\n")
    with pytest.raises(SystemExit):
        call_command("tail", str(execution.id)[:13], stdout=StringIO(), stderr=StringIO())
    twin = ExecutionFactory()
    prefix = os.path.commonprefix([str(execution.id), str(twin.id)])
    if len(prefix.replace("-", "")) >= 8:
        with pytest.raises(CommandError, match="More than one"):
            call_command("tail", prefix, stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="No execution"):
        call_command("tail", "ffffffff-ffff", stdout=StringIO(), stderr=StringIO())
