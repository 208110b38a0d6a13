"""A real webhook receiver (http.server on a free port, in a thread) and helpers that
drive the relay's two webhook stages one pass at a time."""

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from events.relay import Relay
from webhooks.sender import Sender

SECRET = "a-receivers-shared-secret-0123456789"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    def signed_with(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("X-Hodei-Signature", ""))


class Receiver:
    """Answers each POST with the next of ``statuses`` (then ``status``), after sleeping
    ``delay`` seconds; keeps every request it got."""

    def __init__(self, *, status: int = 200, statuses=(), delay: float = 0.0, body=b"ok"):
        self.status, self.statuses, self.delay, self.body = status, list(statuses), delay, body
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(Received(dict(self.headers), body, time.monotonic()))
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.status
                time.sleep(receiver.delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(receiver.body)))
                    self.end_headers()
                    self.wfile.write(receiver.body)
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while self.count() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.url} got {self.count()} of {count} request(s)")
            time.sleep(0.01)
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    """receiver(**options) -> a running Receiver, stopped after the test."""
    made = []

    def make(**options) -> Receiver:
        made.append(Receiver(**options))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture(autouse=True)
def fast_webhooks(settings):
    """Short timeout and backoff, so retries happen within a test."""
    settings.HODEI_WEBHOOK_TIMEOUT_SECONDS = 1.0
    settings.HODEI_WEBHOOK_BACKOFF_SECONDS = 0.05
    settings.HODEI_WEBHOOK_MAX_BACKOFF_SECONDS = 0.2
    settings.HODEI_WEBHOOK_RETRY_HOURS = 1.0


@pytest.fixture
def sender():
    """A sender of the test's own (not the relay's), closed after it."""
    made = Sender(threads=8)
    yield made
    made.close()


def relay_pass(sender: Sender, *, budget_seconds: float = 0.2) -> None:
    """What a relay pass does for webhooks: fan the new events out, then send."""
    relay = Relay()
    while relay.dispatch():
        pass
    sender.tick(budget_seconds=budget_seconds)


def settle(sender: Sender, until, *, timeout: float = 10.0):
    """Relay passes until ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        relay_pass(sender)
        value = until()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout} s")
