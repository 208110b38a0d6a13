"""Structured logs: one JSON object per line with HODEI_LOG_FORMAT=json, readable text
otherwise; execution, job, worker and schedule ids travel as fields (``extra=``), and no
secret (API tokens, bearer headers, passwords, secret env values) is ever written."""

import json
import logging
import re
import threading
from datetime import UTC, datetime

ID_FIELDS = ("execution_id", "job_id", "worker_id", "schedule_id", "service")
_TOKEN = re.compile(r"hodei_[A-Za-z0-9_-]{16,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"']+")
_PASSWORD = re.compile(r"(?i)((?:password|secret|token|api_key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+")
MASK = "********"

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
MAX_SECRETS = 10_000


def register_secret(value: str) -> None:
    """Mask this value wherever it would appear in a log line (secret env values)."""
    if value and len(value) >= 4:
        with _secrets_lock:
            if len(_secrets) < MAX_SECRETS:
                _secrets.add(value)


def redact(text: str) -> str:
    text = _TOKEN.sub(MASK, text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    text = _PASSWORD.sub(lambda m: m.group(1) + MASK, text)
    if _secrets:
        with _secrets_lock:
            secrets = sorted(_secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ID_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = str(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(
            f"{name}={getattr(record, name)}"
            for name in ID_FIELDS
            if getattr(record, name, None) is not None
        )
        if record.exc_info:
            text = redact(text)
        return f"{text} {ids}" if ids else text
