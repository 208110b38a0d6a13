from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from accounts.models import token_create
from accounts.roles import OPERATORS, VIEWERS
from hodei.lib.durations import parse_duration

ROLES = {"operator": OPERATORS, "viewer": VIEWERS}
ABILITIES = {
    "superuser": "may do everything (every API and the admin)",
    "operator": "may read everything, create and change pipelines, jobs and schedules, "
    "run and cancel executions, and start managed workers",
    "viewer": "may read pipelines, jobs, schedules, workers, executions and their logs, "
    "and change nothing",
}


class Command(BaseCommand):
    help = (
        "Print a new API token for USERNAME (the user it acts as, created without a "
        "password if missing) alone on stdout; what it may do goes to stderr. Without "
        "--role or --superuser a new user has no permissions (every call is a 403)."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", help="The user the token acts as (created if missing).")
        parser.add_argument(
            "--role",
            choices=sorted(ROLES),
            help="Add the user to the role's group (Hodei operators or Hodei viewers).",
        )
        parser.add_argument("--superuser", action="store_true", help="Make the user a superuser.")
        parser.add_argument(
            "--name", default="", help="A label for the token itself, shown in the admin."
        )
        parser.add_argument(
            "--expires",
            default=None,
            help="How long it is valid, such as 90d, 12h, 2w (default: until revoked).",
        )

    def handle(self, *args, username, role, superuser, name, expires, **options):
        try:
            lifetime = parse_duration(expires) if expires else None
        except ValueError as exc:
            raise CommandError(f"--expires {exc}") from None
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
        if superuser:
            user.is_superuser = True
            user.is_staff = True
        user.save()
        if role:
            try:
                user.groups.add(Group.objects.get(name=ROLES[role]))
            except Group.DoesNotExist:
                raise CommandError(f"The group {ROLES[role]!r} is missing: run migrate.") from None
        token, raw = token_create(user=user, name=name or "createtoken", lifetime=lifetime)
        self.stdout.write(raw)
        until = f" It expires at {token.expires_at:%Y-%m-%d %H:%M} UTC." if lifetime else ""
        self.stderr.write(describe(User.objects.get(pk=user.pk)) + until)


def describe(user) -> str:
    """What a token of ``user`` may do, in one sentence."""
    if user.is_superuser:
        ability = ABILITIES["superuser"]
    else:
        groups = set(user.groups.values_list("name", flat=True))
        held = [key for key, group in ROLES.items() if group in groups]
        if "operator" in held:
            ability = ABILITIES["operator"]
        elif "viewer" in held:
            ability = ABILITIES["viewer"]
        elif user.get_all_permissions():
            ability = "may use its own permissions: " + ", ".join(
                sorted(user.get_all_permissions())
            )
        else:
            return (
                f"A token for {user.username!r}, who has no permissions: every API call will "
                "answer 403. Give it --role viewer or --role operator (or permissions in the "
                "admin). Shown once: keep it."
            )
    return f"A token for {user.username!r}, who {ability}. Shown once: keep it."
