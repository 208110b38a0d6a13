"""The agent's command line. ``hodei-agent`` runs an agent over HTTP on any machine:

    hodei-agent --server https://hodei.example.com:8082 --registration-token hodei_reg_...

``manage.py runworker --server URL`` (or with ``HODEI_SERVER_URL`` set) is the same code
path: manage.py hands it over before Django loads, so neither needs ``DATABASE_URL`` or
``SECRET_KEY``. Plain Python: no settings, no database; secrets come from the
environment (``HODEI_AGENT_TOKEN``, ``HODEI_REGISTRATION_TOKEN``) rather than the
command line, where every user of the host can read them."""

import argparse
import json
import logging
import os
import socket
import sys

from agent.loop import Agent, AgentConfig
from agent.sandbox import probe
from agent.transport import Rejected, TransportError
from agent.transport_http import HttpTransport
from telemetry.logs import JsonFormatter, RedactingFilter, TextFormatter

log = logging.getLogger("hodei.agent")

# Exit codes: refused by the control plane (revoked, bad token), bad setup.
EXIT_REFUSED, EXIT_USAGE = 3, 2
REGISTER_RETRY_MAX_SECONDS = 30.0


class SetupError(Exception):
    """The agent cannot start as asked: the message says why."""


def add_arguments(parser: argparse.ArgumentParser, *, http_only: bool = False) -> None:
    """The options of ``hodei-agent`` and ``manage.py runworker`` alike."""
    parser.add_argument(
        "--type",
        default=None,
        help="Worker type; claims jobs of it or any. Over HTTP it may be left out when the "
        "registration token has one.",
    )
    parser.add_argument(
        "--name",
        default="",
        help="Stable name; a restart reuses its row"
        + (" (default: this host's name)." if http_only else "."),
    )
    parser.add_argument("--concurrency", type=int, default=1, help="Commands at once.")
    parser.add_argument("--labels", default="", help="k=v,k2=v2")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="K=V",
        help="One label (repeatable); the value may hold ',' (not '=' in the key).",
    )
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
    parser.add_argument(
        "--spare-shells",
        type=int,
        default=None,
        help="Bash processes kept started (in their sandboxes) for the next commands, which "
        "then start in about 0.4 ms instead of 2 (8 sandboxed) (HODEI_SPARE_SHELLS, "
        "default 1; 0 for none).",
    )
    http = parser.add_argument_group(
        "over HTTP" + ("" if http_only else " (instead of the database)")
    )
    http.add_argument(
        "--server",
        default=None,
        help="The worker manager's URL, such as https://hodei.example.com:8082 (HODEI_SERVER_URL).",
    )
    http.add_argument(
        "--token",
        default=None,
        help="This agent's worker credential (better: HODEI_AGENT_TOKEN, which other users "
        "of the host cannot read).",
    )
    http.add_argument(
        "--registration-token",
        default=None,
        help="Register with this token and receive a credential (better: "
        "HODEI_REGISTRATION_TOKEN).",
    )
    http.add_argument(
        "--credential-file",
        default=None,
        help="Keep the credential in this file (mode 0600) so that a restart reuses it.",
    )
    http.add_argument(
        "--ca-file",
        default=None,
        help="Trust this CA certificate (PEM) for the server's, instead of the system's.",
    )


def wants_http(argv: list[str], environ=os.environ) -> bool:
    """Whether ``runworker`` with these arguments is an HTTP agent."""
    given = any(arg == "--server" or arg.startswith("--server=") for arg in argv)
    return given or bool(environ.get("HODEI_SERVER_URL", "").strip())


def parse_labels(raw: str) -> dict[str, str]:
    labels = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        labels.update(parse_label(item, option="--labels takes k=v pairs separated by commas"))
    return labels


def parse_label(item: str, *, option: str = "--label takes k=v") -> dict[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise SetupError(f"{option}, got {item!r}")
    return {key.strip(): value.strip()}


def labels_of(options: dict) -> dict[str, str]:
    labels = parse_labels(options.get("labels") or "")
    for item in options.get("label") or []:
        labels.update(parse_label(item))
    if options.get("labels_json"):
        try:
            given = json.loads(options["labels_json"])
        except ValueError:
            raise SetupError("--labels-json must be a JSON object") from None
        if not isinstance(given, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in given.items()
        ):
            raise SetupError("--labels-json must be a JSON object of strings")
        labels.update(given)
    return labels


def config_of(options: dict, *, default_name: str = "") -> AgentConfig:
    if not 1 <= options["concurrency"] <= 1024:
        raise SetupError("--concurrency must be between 1 and 1024")
    try:
        config = AgentConfig.from_env(
            type=options.get("type") or "",
            name=options.get("name") or default_name,
            concurrency=options["concurrency"],
            labels=labels_of(options),
            heartbeat_seconds=options.get("heartbeat_seconds"),
            poll_seconds=options.get("poll_seconds"),
            shutdown_grace_seconds=options.get("shutdown_grace_seconds"),
            isolation=options.get("isolation"),
            spare_shells=options.get("spare_shells"),
        )
    except ValueError as exc:
        raise SetupError(str(exc)) from None
    if not 0 <= config.spare_shells <= 64:
        raise SetupError("--spare-shells (HODEI_SPARE_SHELLS) must be between 0 and 64")
    return config


def refuse_without_sandbox(config: AgentConfig) -> None:
    """An agent meant to sandbox its commands does not start where it cannot."""
    if config.isolation not in ("sandbox", "none"):
        raise SetupError(f"--isolation must be sandbox or none, got {config.isolation!r}")
    if config.isolation == "sandbox":
        problem = probe(config.sandbox)
        if problem:
            raise SetupError(f"Cannot sandbox commands here: {problem}")
    else:
        log.warning(
            "isolation none: commands run unsandboxed as this agent's user; they can read "
            "its environment and files and signal it. Install bubblewrap "
            "(apt-get install bubblewrap) and drop --isolation none."
        )


def http_transport(options: dict, environ=os.environ) -> HttpTransport:
    server = options.get("server") or environ.get("HODEI_SERVER_URL", "")
    if not server.strip():
        raise SetupError("--server (or HODEI_SERVER_URL) is required")
    try:
        return HttpTransport(
            server_url=server,
            credential=options.get("token") or environ.get("HODEI_AGENT_TOKEN", ""),
            registration_token=(
                options.get("registration_token") or environ.get("HODEI_REGISTRATION_TOKEN", "")
            ),
            credential_file=options.get("credential_file"),
            ca_file=options.get("ca_file"),
        )
    except (ValueError, OSError) as exc:  # a bad URL, an unreadable file or CA
        raise SetupError(str(exc)) from None


def register(agent: Agent) -> None:
    """Register, trying again (with a growing pause) while the server is unreachable,
    as an agent started before its control plane must. A refusal ends it."""
    pause = 0.5
    while True:
        try:
            agent.register()
            return
        except TransportError as exc:
            if agent.stopping_since is not None:
                raise
            log.warning("cannot register yet (%s); trying again in %.1f s", exc, pause)
            agent.wait_io(timeout=pause)
            if agent.stopping_since is not None:
                raise
            pause = min(pause * 2, REGISTER_RETRY_MAX_SECONDS)


def run_http(options: dict, *, environ=os.environ) -> int:
    """Run an HTTP agent until it is stopped (SIGTERM, Ctrl-C) or refused. The exit
    code: 0 when stopped, EXIT_REFUSED when the control plane refused it."""
    config = config_of(options, default_name=socket.gethostname())
    refuse_without_sandbox(config)
    agent = Agent(config, http_transport(options, environ))
    agent.install_signal_handlers()
    try:
        register(agent)
    except Rejected as exc:
        agent.transport.close()
        print(f"hodei-agent: the control plane refused this agent: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except TransportError:
        agent.transport.close()
        return 0  # stopped before it could register
    agent.run()
    if agent.stop_reason:
        print(f"hodei-agent: stopped: {agent.stop_reason}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def setup_logging() -> None:
    """Django's LOGGING, without Django: one line per record on stderr (JSON with
    HODEI_LOG_FORMAT=json), secrets redacted."""
    handler = logging.StreamHandler()
    if os.environ.get("HODEI_LOG_FORMAT", "text") == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("HODEI_LOG_LEVEL", "INFO").upper())
    logging.getLogger("hodei").setLevel(logging.INFO)


def main(argv: list[str] | None = None, *, prog: str = "hodei-agent") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a Hodei worker agent against the worker manager over HTTP(S): "
        "register, claim queued executions of its type, run them, stream their logs, "
        "heartbeat. SIGTERM or Ctrl-C stops it gracefully.",
    )
    add_arguments(parser, http_only=True)
    options = vars(parser.parse_args(argv))
    setup_logging()
    from telemetry.tracing import setup_tracing

    setup_tracing("agent", instrument_django=False)
    try:
        return run_http(options)
    except SetupError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE


def entry_point() -> None:
    """The ``hodei-agent`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
