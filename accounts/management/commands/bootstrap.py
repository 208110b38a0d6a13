import os
import secrets
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.models import token_create
from hodei.lib.addresses import service_urls


class Command(BaseCommand):
    help = (
        "First run only: create the 'admin' superuser with a generated password and an API "
        "token, keep them in var/admin-credentials (owner-only), and show them once on a "
        "terminal (never in a log: elsewhere only the file's path is printed)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        path = Path(settings.VAR_DIR) / "admin-credentials"
        urls = service_urls()
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            where = f" (credentials in {path})" if path.exists() else ""
            self.stdout.write(f"Admin account exists{where}.")
        else:
            password = secrets.token_urlsafe(12)
            user = User.objects.create_superuser(username=username, email="", password=password)
            _, token = token_create(user=user, name="bootstrap")
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(f"username={username}\npassword={password}\ntoken={token}\n")
            if self._to_terminal():
                self.stdout.write(
                    f"Created the admin account (shown once; also kept in {path}, readable "
                    f"only by you):\n  user {username!r} password {password!r}\n"
                    f"  API token: {token}"
                )
            else:
                # Output captured to a file (a log) would keep the password: not there.
                self.stdout.write(
                    f"Created the admin account {username!r}; its password and API token are "
                    f"in {path} (readable only by you)."
                )
        self.stdout.write(
            "\n".join(
                [
                    f"  admin:      {urls['orchestrator']}/admin/",
                    f"  start here: {urls['orchestrator']}/  (every API, its docs and health)",
                    f"  APIs:       {urls['orchestrator']}  {urls['scheduler']}  "
                    f"{urls['workermanager']}",
                ]
            )
        )

    def _to_terminal(self) -> bool:
        stream = getattr(self.stdout, "_out", sys.stdout)
        return hasattr(stream, "isatty") and stream.isatty()
