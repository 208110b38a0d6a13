"""Secret values at rest: job secret variables are stored encrypted with Fernet (AES-128
in CBC mode with an HMAC-SHA256, from the maintained ``cryptography`` library) under
Hodei's own key, ``HODEI_SECRETS_KEY``, never the Django ``SECRET_KEY``.

The setting is a list of keys, newest first (``HODEI_SECRETS_KEY=new,old``): values are
encrypted with the first and decrypted with any (MultiFernet), so a key is rotated by
putting the new one first, running ``hodei rotatesecrets`` (which re-encrypts every stored
value with it), then dropping the old one. Values are decrypted only to hand an execution
to its agent."""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

# Every Fernet token starts with its version byte, 0x80, base64-encoded.
TOKEN_PREFIX = "gAAAAA"
# How a secret value is shown (API, admin, exports); sent back, it means "unchanged".
MASK = "********"
# Shorter values cannot be masked in logs without masking innocent text (GitLab: 8).
MIN_LENGTH = 8


class SecretsKeyError(ValueError):
    pass


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise SecretsKeyError(
            "HODEI_SECRETS_KEY must be Fernet keys (32 url-safe base64-encoded bytes), comma "
            "separated, newest first: `hodei rotatesecrets --generate-key` prints one."
        ) from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.HODEI_SECRETS_KEYS))


def generate_key() -> str:
    return Fernet.generate_key().decode()


def is_encrypted(value: str) -> bool:
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX)


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretsKeyError(
            "A stored secret cannot be decrypted with HODEI_SECRETS_KEY: was a key dropped "
            "before `hodei rotatesecrets` ran?"
        ) from None


def rotate(token: str) -> str:
    """The value re-encrypted with the newest key."""
    return fernet().rotate(token.encode()).decode()


def encrypt_env(env: dict[str, str]) -> dict[str, str]:
    return {name: encrypt(value) for name, value in env.items()}


def decrypt_env(env: dict[str, str]) -> dict[str, str]:
    return {name: decrypt(token) for name, token in env.items()}
