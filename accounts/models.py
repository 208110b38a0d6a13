import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models

from hodei.lib import clock
from hodei.lib.ids import uuid7
from hodei.lib.validators import plain_text

TOKEN_PREFIX = "hodei_"


def hash_token(raw: str) -> str:
    # Tokens are 256 random bits: a fast hash is enough, no salt or stretching needed.
    return hashlib.sha256(raw.encode()).hexdigest()


def new_token(prefix: str = TOKEN_PREFIX) -> tuple[str, str, str]:
    """A new bearer secret of 256 random bits starting with ``prefix``: (raw, the first
    characters to recognise it by, its hash). API tokens, registration tokens and worker
    credentials are all made here; only the hash is stored. Every prefix starts with
    ``hodei_``, which the log redaction (telemetry.logs) looks for."""
    raw = prefix + secrets.token_urlsafe(32)
    return raw, raw[: len(prefix) + 6], hash_token(raw)


class ApiToken(models.Model):
    """A bearer token for API clients. Only its SHA-256 is stored; the raw token is shown
    once, when created. Revoking sets ``revoked_at``; the row stays for the audit trail."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, validators=[plain_text])
    prefix = models.CharField(
        max_length=16, editable=False, help_text="First characters, to recognise a token."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=clock.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="After this it is refused (401)."
    )

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def revoke(self, *, now=None) -> None:
        if self.revoked_at is None:
            self.revoked_at = now or clock.now()
            self.save(update_fields=["revoked_at"])


def token_create(
    *, user, name: str = "", lifetime: timedelta | None = None
) -> tuple[ApiToken, str]:
    """Create a token for ``user`` (valid for ``lifetime``, or until revoked); returns the
    row and the raw token (shown once)."""
    raw, prefix, key_hash = new_token()
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=prefix,
        key_hash=key_hash,
        expires_at=clock.now() + lifetime if lifetime else None,
    )
    return token, raw


class AuthFailure(models.Model):
    """Failed bearer-token attempts of one client address in the current window: past
    the limit the address is refused (429) until the window ends. In the database, so
    every API process and replica counts the same attempts."""

    address = models.GenericIPAddressField(unique=True)
    failures = models.PositiveIntegerField(default=0)
    window_started_at = models.DateTimeField(default=clock.now)

    def __str__(self) -> str:
        return f"{self.address}: {self.failures}"
