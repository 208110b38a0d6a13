"""One webhook POST and its answer. No database here: it runs on the sender's threads
(webhooks.sender), which only wait on receivers.

The body is the event's message as compact JSON; ``X-Hodei-Signature`` is
``sha256=`` and the hex HMAC-SHA256 of exactly those bytes keyed with the subscription's
secret, as GitHub signs (``X-Hub-Signature-256``). ``X-Hodei-Delivery`` is the event id:
the same on every retry and redelivery, so a receiver can drop duplicates."""

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from datetime import datetime

import requests

from hodei import __version__
from hodei.lib import clock

USER_AGENT = f"Hodei-Webhooks/{__version__}"
RESPONSE_BODY_BYTES = 1024


def body_of(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class OutgoingRequest:
    url: str
    body: bytes = field(repr=False)
    headers: dict[str, str] = field(repr=False)


def request_for(*, url: str, secret: str, event_id: int, event_type: str, message: dict):
    body = body_of(message)
    return OutgoingRequest(
        url=url,
        body=body,
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Hodei-Event": event_type,
            "X-Hodei-Delivery": str(event_id),
            "X-Hodei-Signature": signature(secret, body),
        },
    )


@dataclass(frozen=True)
class AttemptResult:
    attempted_at: datetime
    duration_ms: int
    status_code: int | None = None
    response_body: str = ""
    error: str = ""  # why there is no answer (timeout, refused...); "" when there is one

    @property
    def is_success(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(request: OutgoingRequest, *, timeout: float) -> AttemptResult:
    """POST ``request`` and read at most the answer's first KiB. ``timeout`` bounds the
    connection and each wait for the answer; redirects are not followed (a 3xx is a
    failed attempt: the subscription's URL should be the final one). Never raises."""
    attempted_at, started = clock.now(), time.monotonic()

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        with requests.post(
            request.url,
            data=request.body,
            headers=request.headers,
            timeout=(timeout, timeout),
            allow_redirects=False,
            stream=True,
        ) as response:
            try:
                head = response.raw.read(RESPONSE_BODY_BYTES, decode_content=True) or b""
            except (requests.RequestException, OSError, ValueError):
                head = b""  # the status line is the answer; a broken body does not undo it
            return AttemptResult(
                attempted_at=attempted_at,
                duration_ms=elapsed_ms(),
                status_code=response.status_code,
                response_body=_text(head),
            )
    except requests.Timeout:
        error = f"No answer within {timeout:g} s."
    except requests.ConnectionError as exc:
        error = f"Could not connect: {_reason(exc)}"
    except Exception as exc:  # a bad URL, TLS... recorded on the attempt, never raised
        error = f"{type(exc).__name__}: {_reason(exc)}"
    return AttemptResult(attempted_at=attempted_at, duration_ms=elapsed_ms(), error=error[:500])


def _text(data: bytes) -> str:
    # PostgreSQL text holds no NUL character.
    return data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _reason(exc: BaseException) -> str:
    """The innermost cause ("[Errno 111] Connection refused"), not requests' and urllib3's
    wrappers around it."""
    cause = exc
    for _ in range(10):
        inner = getattr(cause, "reason", None)
        if not isinstance(inner, BaseException):
            inner = cause.__cause__ or cause.__context__
        if inner is None:
            break
        cause = inner
    return _text(str(cause).encode())[:400] or type(cause).__name__
