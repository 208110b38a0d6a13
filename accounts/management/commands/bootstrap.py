import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.models import token_create


class Command(BaseCommand):
    help = (
        "First run only: create the 'admin' superuser with a generated password and an API "
        "token, print both once, and keep them in var/admin-credentials (owner-only)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        path = Path(settings.VAR_DIR) / "admin-credentials"
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            where = f" (see {path})" if path.exists() else ""
            self.stdout.write(f"Admin account exists{where}.")
            return
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser(username=username, email="", password=password)
        _, token = token_create(user=user, name="bootstrap")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"username={username}\npassword={password}\ntoken={token}\n")
        self.stdout.write(
            "\n".join(
                [
                    "Created the admin account (shown once; also kept in "
                    f"{path}, readable only by you):",
                    f"  admin:     http://127.0.0.1:8080/admin/  user {username!r} "
                    f"password {password!r}",
                    f"  API token: {token}",
                ]
            )
        )
