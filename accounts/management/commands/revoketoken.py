from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiToken, hash_token


class Command(BaseCommand):
    help = "Revoke an API token, given the token itself or its prefix."

    def add_arguments(self, parser):
        parser.add_argument("token", help="The raw token, or the prefix shown in the admin.")

    def handle(self, *args, token, **options):
        rows = ApiToken.objects.filter(key_hash=hash_token(token), revoked_at__isnull=True)
        if not rows.exists():
            rows = ApiToken.objects.filter(prefix=token, revoked_at__isnull=True)
        count = rows.count()
        if count != 1:
            raise CommandError(f"{count} active tokens match; give the whole token.")
        rows.get().revoke()
        self.stdout.write("revoked")
