"""Captured output of one execution: per-stream buffers, flushed as ordered chunks."""

import codecs
import time
from dataclasses import dataclass, field

from agent.masking import Masker

# workermanager.choices.LogStream's values (this module runs without Django).
STDOUT, STDERR, SYSTEM = "stdout", "stderr", "system"
# Chunks ready to store are stored together once they hold this much (or once the oldest
# output in them has waited flush_seconds): a command printing fast is stored a MiB per
# INSERT, one printing slowly is seen within flush_seconds.
STORE_BATCH_BYTES = 1024 * 1024


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

    Secret values are masked (agent.masking) as output arrives, across both streams,
    before it is cut into chunks. A stream is cut into a chunk once it holds
    ``flush_bytes``; chunks are handed out (``due``) once they hold STORE_BATCH_BYTES
    together, or once the oldest output not yet handed out has waited
    ``flush_seconds``. Memory stays bounded by those two; output past ``max_bytes`` is
    counted but dropped, with one system line saying so."""

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
        maskable = [s for s in secrets if len(s) >= 4]
        self.masker = Masker(maskable) if maskable else None
        self.next_seq = first_seq
        self.stored_bytes = 0
        self.seen_bytes = 0
        self.truncated = False
        self._streams = {
            STDOUT: _StreamBuffer(STDOUT),
            STDERR: _StreamBuffer(STDERR),
        }
        self._ready: list[Chunk] = []
        self._ready_bytes = 0  # characters, in fact: what the chunks in _ready hold
        self._ready_since: float | None = None  # when their oldest output arrived
        self.batch_bytes = max(STORE_BATCH_BYTES, flush_bytes)

    def feed(self, stream: str, data: bytes, *, now: float | None = None) -> None:
        self.seen_bytes += len(data)
        if self.truncated:
            return
        room = self.max_bytes - self.stored_bytes
        if len(data) > room:
            data = data[:room]
            self._truncate()
        self.stored_bytes += len(data)
        text = self._streams[stream].decoder.decode(data)
        self._buffer_masked(stream, text, now=now if now is not None else time.monotonic())

    def _buffer_masked(self, stream: str, text: str, *, now: float) -> None:
        if self.masker is None:
            self._buffer(stream, text, now=now)
        else:
            for released_stream, released in self.masker.feed(stream, text, now=now):
                self._buffer(released_stream, released, now=now)

    def _buffer(self, stream: str, text: str, *, now: float) -> None:
        buf = self._streams[stream]
        buf.text += text
        if buf.text and buf.pending_since is None:
            buf.pending_since = now
        if len(buf.text) >= self.flush_bytes:
            self._cut(buf, whole=True)

    def _release_held(self, *, now: float) -> None:
        """What the masker held (the start of what might have been a secret), masked."""
        if self.masker is not None:
            for stream, text in self.masker.flush():
                self._buffer(stream, text, now=now)

    def _truncate(self) -> None:
        self.truncated = True
        now = time.monotonic()
        for stream, buf in self._streams.items():
            self._buffer_masked(stream, buf.decoder.decode(b"", final=True), now=now)
        self._release_held(now=now)
        for buf in self._streams.values():
            self._cut(buf, whole=True)
        self.system(
            f"[hodei] output truncated: more than {self.max_bytes} bytes; "
            "further output is dropped (the command keeps running)."
        )

    def system(self, message: str) -> None:
        self._add_ready(Chunk(self.next_seq, SYSTEM, message + "\n", time.time()))

    def _add_ready(self, chunk: Chunk, *, since: float | None = None) -> None:
        self._ready.append(chunk)
        self.next_seq += 1
        self._ready_bytes += len(chunk.message)
        if self._ready_since is None:
            self._ready_since = since if since is not None else time.monotonic()

    def due(self, *, now: float | None = None) -> bool:
        now = now if now is not None else time.monotonic()
        if self.masker is not None and self.masker.held_too_long(now=now):
            return True
        if self._ready_bytes >= self.batch_bytes:
            return True
        if self._ready_since is not None and now - self._ready_since >= self.flush_seconds:
            return True
        return any(
            b.pending_since is not None and now - b.pending_since >= self.flush_seconds
            for b in self._streams.values()
        )

    def take(self, *, final: bool = False, now: float | None = None) -> list[Chunk]:
        """Chunks ready to store: everything on ``final``, else what has waited long
        enough. Prefer cutting at a line end so entries hold whole lines."""
        now = now if now is not None else time.monotonic()
        if final:
            for stream, buf in self._streams.items():
                tail = buf.decoder.decode(b"", final=True)
                if tail:
                    self._buffer_masked(stream, tail, now=now)
        if final or (self.masker is not None and self.masker.held_too_long(now=now)):
            self._release_held(now=now)
        for buf in self._streams.values():
            if final:
                self._cut(buf, whole=True)
            elif buf.pending_since is not None and now - buf.pending_since >= self.flush_seconds:
                # A partial line waits for its end, but not for more than 5 flush periods.
                stale = now - buf.pending_since >= 5 * self.flush_seconds
                self._cut(buf, whole=stale, now=now)
        ready, self._ready = self._ready, []
        self._ready_bytes, self._ready_since = 0, None
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
        now = now if now is not None else time.monotonic()
        # The chunk is as old as its oldest output (its freshness is counted from then).
        since = buf.pending_since if buf.pending_since is not None else now
        buf.text = rest
        buf.pending_since = now if rest else None
        self._add_ready(
            Chunk(self.next_seq, buf.stream, self._clean(text), time.time()), since=since
        )

    def _clean(self, text: str) -> str:
        # PostgreSQL text cannot hold NUL.
        return text.replace("\x00", "\ufffd")
