from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from hodei.lib import secrets
from orchestrator.models import Job


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored job secret with the newest HODEI_SECRETS_KEY (the first of "
        "the list). Rotating a key: put the new one first (HODEI_SECRETS_KEY=new,old), run "
        "this, then drop the old one. --generate-key prints a new key."
    )

    def add_arguments(self, parser):
        parser.add_argument("--generate-key", action="store_true", help="Print a new key.")

    def handle(self, *args, generate_key, **options):
        if generate_key:
            self.stdout.write(secrets.generate_key())
            return
        rotated = 0
        try:
            with transaction.atomic():
                jobs = Job.objects.exclude(secret_env={}).select_for_update().only("secret_env")
                for job in jobs:
                    job.secret_env = {n: secrets.rotate(t) for n, t in job.secret_env.items()}
                    job.save(update_fields=["secret_env"])
                    rotated += len(job.secret_env)
        except secrets.SecretsKeyError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Re-encrypted {rotated} secret value(s) with the newest key.")
