import logging

from django.core.management.base import BaseCommand, CommandError

from agent import cli
from agent.loop import Agent
from agent.transport_db import DatabaseTransport
from orchestrator.models import worker_type_validator
from telemetry.tracing import setup_tracing


class Command(BaseCommand):
    help = (
        "Run a worker agent: register as a Worker, claim queued executions of its type, run "
        "them, stream their logs, heartbeat. SIGTERM or Ctrl-C stops it gracefully. It "
        "talks to the database, or, with --server (HODEI_SERVER_URL), to the worker "
        "manager over HTTP as hodei-agent does (then without DATABASE_URL or SECRET_KEY)."
    )

    def add_arguments(self, parser):
        cli.add_arguments(parser)

    def handle(self, *args, **options):
        logging.getLogger("hodei").setLevel(logging.INFO)
        if options["server"] or cli.wants_http([]):
            # Normally manage.py hands this over before Django loads (hodei.cli); the
            # same code path when called from Django (call_command).
            setup_tracing("agent", instrument_django=False)
            try:
                code = cli.run_http(options)
            except cli.SetupError as exc:
                raise CommandError(str(exc)) from None
            if code:
                raise CommandError("the agent was refused", returncode=code)
            return
        if not options["type"]:
            raise CommandError("--type is required")
        try:
            worker_type_validator(options["type"])
        except Exception as exc:
            raise CommandError(f"--type: {exc}") from None
        setup_tracing("agent")
        try:
            config = cli.config_of(options)
            cli.refuse_without_sandbox(config)
        except cli.SetupError as exc:
            raise CommandError(str(exc)) from None
        agent = Agent(config, DatabaseTransport())
        agent.install_signal_handlers()
        agent.run()
