import json
import logging

from django.core.management.base import BaseCommand, CommandError

from agent.loop import Agent, AgentConfig
from agent.sandbox import probe
from agent.transport_db import DatabaseTransport
from orchestrator.models import worker_type_validator
from telemetry.tracing import setup_tracing


def parse_labels(raw: str) -> dict[str, str]:
    labels = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--labels takes k=v pairs separated by commas, got {item!r}")
        labels[key.strip()] = value.strip()
    return labels


def refuse_without_sandbox(config: AgentConfig) -> None:
    """An agent meant to sandbox its commands does not start where it cannot."""
    if config.isolation not in ("sandbox", "none"):
        raise CommandError(f"--isolation must be sandbox or none, got {config.isolation!r}")
    if config.isolation == "sandbox":
        problem = probe(config.sandbox)
        if problem:
            raise CommandError(f"Cannot sandbox commands here: {problem}")
    else:
        logging.getLogger("hodei.agent").warning(
            "isolation none: commands run unsandboxed as this agent's user; they can read "
            "its environment and files and signal it. Install bubblewrap "
            "(apt-get install bubblewrap) and drop --isolation none."
        )


def labels_of(options) -> dict[str, str]:
    labels = parse_labels(options["labels"])
    if options["labels_json"]:
        try:
            given = json.loads(options["labels_json"])
        except ValueError:
            raise CommandError("--labels-json must be a JSON object") from None
        if not isinstance(given, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in given.items()
        ):
            raise CommandError("--labels-json must be a JSON object of strings")
        labels.update(given)
    return labels


class Command(BaseCommand):
    help = (
        "Run a worker agent: register as a Worker, claim queued executions of its type, run "
        "them, stream their logs, heartbeat. SIGTERM or Ctrl-C stops it gracefully."
    )

    def add_arguments(self, parser):
        parser.add_argument("--type", required=True, help="Worker type; claims jobs of it or any.")
        parser.add_argument("--name", default="", help="Stable name; a restart reuses its row.")
        parser.add_argument("--concurrency", type=int, default=1, help="Commands at once.")
        parser.add_argument("--labels", default="", help="k=v,k2=v2")
        parser.add_argument(
            "--labels-json",
            default=None,
            help='Labels as a JSON object ({"zone": "eu,west"}): values may hold "," or "=".',
        )
        parser.add_argument("--heartbeat-seconds", type=float, default=None)
        parser.add_argument("--poll-seconds", type=float, default=None)
        parser.add_argument("--shutdown-grace-seconds", type=float, default=None)
        parser.add_argument(
            "--isolation",
            choices=["sandbox", "none"],
            default=None,
            help="sandbox (the default; HODEI_ISOLATION): each command in its own bubblewrap "
            "sandbox. none: plain processes of the agent's own user, which can read the "
            "agent's environment and files and signal it: trusted commands only.",
        )

    def handle(self, *args, **options):
        try:
            worker_type_validator(options["type"])
        except Exception as exc:
            raise CommandError(f"--type: {exc}") from None
        if not 1 <= options["concurrency"] <= 1024:
            raise CommandError("--concurrency must be between 1 and 1024")
        logging.getLogger("hodei").setLevel(logging.INFO)
        setup_tracing("agent")
        config = AgentConfig.from_env(
            type=options["type"],
            name=options["name"],
            concurrency=options["concurrency"],
            labels=labels_of(options),
            heartbeat_seconds=options["heartbeat_seconds"],
            poll_seconds=options["poll_seconds"],
            shutdown_grace_seconds=options["shutdown_grace_seconds"],
            isolation=options["isolation"],
        )
        refuse_without_sandbox(config)
        agent = Agent(config, DatabaseTransport())
        agent.install_signal_handlers()
        agent.run()
