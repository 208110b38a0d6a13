import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser as DRFJSONParser


class JSONParser(DRFJSONParser):
    """DRF's JSON parser, hardened: deeply nested input and NUL characters are a 400,
    not a RecursionError or a database error later."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"Request body is not valid {encoding} text.") from exc
        try:
            data = json.loads(text, parse_constant=_reject_constant)
            has_nul = _contains_nul(data)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nesting too deep.") from exc
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        if has_nul:
            # PostgreSQL cannot store NUL in text or jsonb.
            raise ParseError("JSON parse error - NUL characters are not allowed.")
        return data


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_nul(v) for v in value)
    return False
