from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.models import token_create


class Command(BaseCommand):
    help = "Create USERNAME if missing and print a new API token for it, alone, on stdout."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--superuser", action="store_true", help="Make the user a superuser.")
        parser.add_argument("--name", default="", help="A label for the token.")

    def handle(self, *args, username, superuser, name, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
        if superuser:
            user.is_superuser = True
            user.is_staff = True
        user.save()
        _, raw = token_create(user=user, name=name or "createtoken")
        self.stdout.write(raw)
