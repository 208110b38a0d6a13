"""Validators shared by models (and so by the API's serializers and the admin's forms)."""

import unicodedata

from django.core.exceptions import ValidationError

# Unicode's bidirectional controls: a name with U+202E reads backwards ("gnp.exe" shown
# for "exe.png") and can make one name pass for another in lists and logs.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def plain_text(value: str) -> None:
    """A name: no control characters (newlines, escapes) and no bidi overrides."""
    for char in value or "":
        if char in BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            raise ValidationError(
                f"Control and bidirectional-override characters are not allowed "
                f"(found U+{ord(char):04X}).",
                code="control_character",
            )
