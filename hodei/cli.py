"""The ``hodei`` command: ``manage.py`` for an installed Hodei (``.venv/bin/hodei
createtoken ...`` works from any directory and any shell, without activating the venv).

``runworker`` over HTTP (``--server URL`` or ``HODEI_SERVER_URL``) is handed to the
agent's own command line (agent.cli, as ``hodei-agent``) before Django loads: such an
agent holds no database credentials and no secret key, and needs neither."""

import os
import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "runworker":
        from agent import cli as agent_cli

        if agent_cli.wants_http(sys.argv[2:]):
            prog = f"{Path(sys.argv[0]).name} runworker"
            sys.exit(agent_cli.main(sys.argv[2:], prog=prog))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hodei.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
