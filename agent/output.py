"""Captured output of one execution: per-stream buffers, flushed as ordered chunks."""

import codecs
import time
from dataclasses import dataclass, field

# workermanager.choices.LogStream's values (this module runs without Django).
STDOUT, STDERR, SYSTEM = "stdout", "stderr", "system"
SECRET_MASK = "********"


@dataclass
class Chunk:
    seq: int
    stream: str
    message: str
    created_at: float  # wall-clock seconds


@dataclass
class _StreamBuffer:
    stream: str
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    text: str = ""
    pending_since: float | None = None


class OutputCapture:
    """Collects one execution's stdout and stderr and hands out chunks to store.

    Memory stays bounded: a stream is flushed once it holds ``flush_bytes``; output past
    ``max_bytes`` is counted but dropped, with one system line saying so."""

    def __init__(
        self,
        *,
        max_bytes: int,
        flush_bytes: int,
        flush_seconds: float,
        secrets: list[str] = (),
        first_seq: int = 0,
    ):
        self.max_bytes = max_bytes
        self.flush_bytes = flush_bytes
        self.flush_seconds = flush_seconds
        # Mask longer secrets first so one that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self.next_seq = first_seq
        self.stored_bytes = 0
        self.seen_bytes = 0
        self.truncated = False
        self._streams = {
            STDOUT: _StreamBuffer(STDOUT),
            STDERR: _StreamBuffer(STDERR),
        }
        self._ready: list[Chunk] = []

    def feed(self, stream: str, data: bytes, *, now: float | None = None) -> None:
        self.seen_bytes += len(data)
        if self.truncated:
            return
        room = self.max_bytes - self.stored_bytes
        if len(data) > room:
            data = data[:room]
            self._truncate()
        self.stored_bytes += len(data)
        buf = self._streams[stream]
        buf.text += buf.decoder.decode(data)
        if buf.text and buf.pending_since is None:
            buf.pending_since = now if now is not None else time.monotonic()
        if len(buf.text) >= self.flush_bytes:
            self._cut(buf, whole=True)

    def _truncate(self) -> None:
        self.truncated = True
        for buf in self._streams.values():
            buf.text += buf.decoder.decode(b"", final=True)
            self._cut(buf, whole=True)
        self.system(
            f"[hodei] output truncated: more than {self.max_bytes} bytes; "
            "further output is dropped (the command keeps running)."
        )

    def system(self, message: str) -> None:
        self._ready.append(Chunk(self.next_seq, SYSTEM, message + "\n", time.time()))
        self.next_seq += 1

    def due(self, *, now: float | None = None) -> bool:
        now = now if now is not None else time.monotonic()
        return bool(self._ready) or any(
            b.pending_since is not None and now - b.pending_since >= self.flush_seconds
            for b in self._streams.values()
        )

    def take(self, *, final: bool = False, now: float | None = None) -> list[Chunk]:
        """Chunks ready to store: everything on ``final``, else what has waited long
        enough. Prefer cutting at a line end so entries hold whole lines."""
        now = now if now is not None else time.monotonic()
        for buf in self._streams.values():
            if final:
                buf.text += buf.decoder.decode(b"", final=True)
                self._cut(buf, whole=True)
            elif buf.pending_since is not None and now - buf.pending_since >= self.flush_seconds:
                # A partial line waits for its end, but not for more than 5 flush periods.
                stale = now - buf.pending_since >= 5 * self.flush_seconds
                self._cut(buf, whole=stale, now=now)
        ready, self._ready = self._ready, []
        return ready

    def _cut(self, buf: _StreamBuffer, *, whole: bool, now: float | None = None) -> None:
        if not buf.text:
            buf.pending_since = None
            return
        if whole:
            text, rest = buf.text, ""
        else:
            end = buf.text.rfind("\n") + 1
            if end == 0:
                return
            text, rest = buf.text[:end], buf.text[end:]
        buf.text = rest
        buf.pending_since = (now if now is not None else time.monotonic()) if rest else None
        self._ready.append(Chunk(self.next_seq, buf.stream, self._clean(text), time.time()))
        self.next_seq += 1

    def _clean(self, text: str) -> str:
        # PostgreSQL text cannot hold NUL.
        text = text.replace("\x00", "\ufffd")
        for secret in self.secrets:
            text = text.replace(secret, SECRET_MASK)
        return text
