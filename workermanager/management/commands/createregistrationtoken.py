from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from hodei.api.fields import LABEL_KEY
from hodei.lib.durations import parse_duration
from workermanager.credentials import registration_token_create


def parse_labels(raw: str) -> dict[str, str]:
    labels = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not LABEL_KEY.fullmatch(key):
            raise CommandError(f"--labels takes k=v pairs separated by commas, got {item!r}")
        labels[key] = value.strip()
    return labels


class Command(BaseCommand):
    help = (
        "Print a new registration token alone on stdout (what it allows goes to stderr). An "
        "agent on another machine registers with it and receives its own worker "
        "credential: hodei-agent --server URL --registration-token TOKEN. Shown once; "
        "revoke it in the admin."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--type", default="", help="Its agents are of this worker type (default: any)."
        )
        parser.add_argument("--labels", default="", help="k=v,k2=v2: labels its agents get.")
        parser.add_argument(
            "--expires", default=None, help="How long it is valid: 7d, 12h, 2w (default: ever)."
        )
        parser.add_argument(
            "--uses", type=int, default=None, help="How many agents may register (default: any)."
        )
        parser.add_argument("--name", default="", help="A label for the token, shown in the admin.")

    def handle(self, *args, type, labels, expires, uses, name, **options):
        try:
            lifetime = parse_duration(expires) if expires else None
        except ValueError as exc:
            raise CommandError(f"--expires {exc}") from None
        if uses is not None and uses < 1:
            raise CommandError("--uses must be at least 1")
        try:
            token, raw = registration_token_create(
                name=name or "createregistrationtoken",
                worker_type=type,
                labels=parse_labels(labels),
                lifetime=lifetime,
                uses=uses,
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(raw)
        kind = f"agents of type {type!r}" if type else "agents of any type"
        limits = [f"{uses} registration(s)" if uses else "any number of registrations"]
        if token.expires_at:
            limits.append(f"until {token.expires_at:%Y-%m-%d %H:%M} UTC")
        self.stderr.write(
            f"A registration token for {kind} ({', '.join(limits)}). Shown once: keep it. "
            "On the agent's machine: hodei-agent --server URL --registration-token TOKEN "
            "(or HODEI_REGISTRATION_TOKEN=TOKEN hodei-agent --server URL)."
        )
