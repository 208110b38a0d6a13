import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser as DRFJSONParser

# No Hodei document nests deeper; much deeper input would overflow the recursion of the
# encoders that serialize it again (DRF's JSONField, Django's JSONField, the renderer).
MAX_DEPTH = 64


class JSONParser(DRFJSONParser):
    """DRF's JSON parser, hardened: deeply nested input, NUL characters and lone
    surrogates (``"\\ud800"``) are a 400, not a RecursionError, a database error or a
    UnicodeEncodeError while rendering a response later."""

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
            problem = _find_problem(data)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nesting too deep.") from exc
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        if problem:
            raise ParseError(f"JSON parse error - {problem}.")
        return data


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _find_problem(value, depth: int = 0) -> str | None:
    """Say what makes a parsed document unacceptable, if anything."""
    if isinstance(value, str):
        # PostgreSQL cannot store NUL in text or jsonb.
        if "\x00" in value:
            return "NUL characters are not allowed"
        # A lone surrogate is not Unicode text: it cannot be encoded to store or echo.
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "unpaired surrogate characters are not allowed"
        return None
    if depth >= MAX_DEPTH and isinstance(value, dict | list):
        return f"nesting deeper than {MAX_DEPTH} levels is not allowed"
    if isinstance(value, dict):
        items = (item for pair in value.items() for item in pair)
    elif isinstance(value, list):
        items = iter(value)
    else:
        return None
    for item in items:
        found = _find_problem(item, depth + 1)
        if found:
            return found
    return None


class YAMLParser(DRFJSONParser):
    """Pipeline definitions in YAML (``Content-Type: application/yaml``), read with
    yaml.safe_load (no object construction), with the JSON parser's checks."""

    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        import yaml

        raw = stream.read() if stream is not None else b""
        try:
            data = yaml.safe_load(raw)
            problem = _find_problem(data)
        except RecursionError as exc:
            raise ParseError("YAML parse error - nesting too deep.") from exc
        except yaml.YAMLError as exc:
            raise ParseError(f"YAML parse error - {exc}") from exc
        if problem:
            raise ParseError(f"YAML parse error - {problem}.")
        return data
