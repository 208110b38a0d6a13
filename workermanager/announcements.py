"""Work announced to the long-poll claims waiting in this process.

One LISTEN connection per web server process, held by a thread, for every long-poll
claim (``agent_protocol.agent_claim_wait``) waiting in it: a claim that found nothing
waits here until work of its worker type is announced (a NOTIFY on
``notify.CHANNEL``), instead of opening a connection of its own for each long-poll
(PostgreSQL starts a server process per connection: that cost more than the claim).

Nothing is missed: a claim takes a ``mark`` before it looks for work, and any
announcement the thread receives after the mark wakes it. An announcement received
after the mark was committed after it too, so the claim may not have seen that work;
one received before the mark was committed before the claim began, so the claim saw
it. While there is no listening connection (SQLite, a server that is down, the first
attempt still connecting), ``mark`` is None and the claim polls instead.
"""

import logging
import os
import select
import threading
import time

from hodei.lib.listen import Listener
from workermanager.notify import CHANNEL, queued_payload, supports_notify

log = logging.getLogger("hodei")

# How long the first long-poll of a process waits for the thread's LISTEN (it polls
# meanwhile otherwise), and how long the thread waits before it connects again.
FIRST_CONNECT_SECONDS = 5.0
RECONNECT_SECONDS = 1.0


class Announcements:
    def __init__(self):
        self._changed = threading.Condition()
        self._seq = 0  # announcements received so far
        self._last: dict[str, int] = {}  # worker type ("" for any) -> its latest seq
        self._lost = 0  # seq when the connection was last lost (every claim looks)
        self._listening = False
        self._pid: int | None = None
        self._first_attempt = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def mark(self) -> int | None:
        """Where a claim starts counting, taken before it looks for work; None when no
        connection listens (then poll)."""
        self._start()
        with self._changed:
            return self._seq if self._listening else None

    def wait(self, mark: int | None, *, worker_type: str, seconds: float) -> None:
        """Until work for ``worker_type`` is announced after ``mark`` (or the connection
        is lost), at most ``seconds``."""
        if mark is None:
            time.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        with self._changed:
            while not self._announced_since(mark, worker_type):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._changed.wait(remaining)

    def _announced_since(self, mark: int, worker_type: str) -> bool:
        return (
            self._lost > mark
            or self._last.get("", 0) > mark
            or self._last.get(worker_type, 0) > mark
        )

    def _start(self) -> None:
        # Once per process (a forked gunicorn worker has no threads of its parent).
        if self._pid != os.getpid():
            with self._changed:
                if self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._listening = False
                    self._first_attempt = threading.Event()
                    self._stopping = threading.Event()
                    self._wake_r, self._wake_w = os.pipe()  # stop() wakes the thread
                    self._thread = threading.Thread(
                        target=self._listen_forever,
                        args=(self._stopping,),
                        name="work-announcements",
                        daemon=True,
                    )
                    self._thread.start()
        self._first_attempt.wait(FIRST_CONNECT_SECONDS)

    def stop(self) -> None:
        """Close the connection and end the thread (the next ``mark`` starts them
        again): for a test database that is about to be dropped."""
        thread = self._thread
        if thread is None or self._pid != os.getpid():
            return
        self._stopping.set()
        os.write(self._wake_w, b"x")
        thread.join()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        with self._changed:
            self._pid, self._thread, self._listening = None, None, False

    def _listen_forever(self, stopping: threading.Event) -> None:
        if not supports_notify():
            self._first_attempt.set()
            return
        while not stopping.is_set():
            listener = Listener([CHANNEL])
            started = listener.start()
            with self._changed:
                self._listening = started
            self._first_attempt.set()
            try:
                while listener.alive and not stopping.is_set():
                    ready, _, _ = select.select([listener.fileno(), self._wake_r], [], [])
                    if listener.fileno() in ready:
                        self._received(listener.drain())
            except Exception:  # never end the thread: every claim looks, then it reconnects
                log.exception("listening for work failed; connecting again")
                self._received([("", "")])
            finally:
                listener.close()
                with self._changed:
                    self._listening = False
            stopping.wait(RECONNECT_SECONDS)

    def _received(self, notes: list[tuple[str, str]]) -> None:
        if not notes:
            return
        with self._changed:
            for channel, payload in notes:
                self._seq += 1
                if not channel:  # the connection was lost: every claim looks now
                    self._lost = self._seq
                else:
                    self._last[queued_payload(payload)[0]] = self._seq
            self._changed.notify_all()


announcements = Announcements()
