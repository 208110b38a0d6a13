"""The ``hodei`` command: ``manage.py`` for an installed Hodei (``.venv/bin/hodei
createtoken ...`` works from any directory and any shell, without activating the venv)."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hodei.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
