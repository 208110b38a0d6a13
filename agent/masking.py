"""Masking secret values in a command's output before it is stored.

A safety net, not a boundary (docs/security.md): a command that holds a secret can always
print it in a way no masker knows. What it does catch:

- the value itself, its reverse, its hexadecimal (both cases) and its base64 (at each of
  the three byte alignments a value can start at inside longer base64 output);
- any of those broken over lines (``fold -w4``, ``xxd -p``, ``base64``'s wrapping);
- a value printed in pieces, across reads, flushes and the two streams: whatever could
  still turn into a secret (a suffix of the output that is the start of one) is held back
  until the output says otherwise, for up to ``HOLD_SECONDS``, or the end.

Plain Python: the agent runs without Django."""

import base64
import re
import time

MASK = "********"
HOLD_SECONDS = 60.0
MIN_VARIANT = 6  # a shorter encoding would mask innocent text too
LINE_BREAKS = "\r\n"


def variants(secret: str) -> set[str]:
    raw = secret.encode()
    found = {secret, secret[::-1], raw.hex(), raw.hex().upper()}
    for offset in range(3):
        # Inside longer base64 output a value starts at one of three alignments; keep the
        # characters that depend on the value's bytes alone.
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        start = -(-8 * offset // 6)
        end = 8 * (offset + len(raw)) // 6
        found.add(encoded[start:end])
    return {v for v in found if len(v) >= MIN_VARIANT or v == secret}


def _tolerant(variant: str) -> str:
    """A pattern matching ``variant`` with line breaks anywhere between its characters."""
    return "(?:\r?\n)?".join(re.escape(c) for c in variant)


class Masker:
    """Masks secrets in (stream, text) pieces fed in arrival order; hands back the pieces
    that can be released, masked, and holds back what could still become a secret."""

    def __init__(self, secrets: list[str]):
        found = set()
        for secret in secrets:
            if secret:
                found |= variants(secret)
        # Longest first: a secret that contains another is masked whole.
        self.variants = sorted(found, key=len, reverse=True)
        self.pattern = re.compile("|".join(_tolerant(v) for v in self.variants))
        # How far back a match can start: its characters, plus a CR LF between each.
        self.window = 3 * max((len(v) for v in self.variants), default=0)
        self.pending: list[list[str]] = []  # [stream, text], oldest first
        self.pending_since: float | None = None

    def feed(self, stream: str, text: str, *, now: float | None = None) -> list[tuple[str, str]]:
        if not text:
            return []
        if self.pending and self.pending[-1][0] == stream:
            self.pending[-1][1] += text
        else:
            self.pending.append([stream, text])
        if self.pending_since is None:
            self.pending_since = time.monotonic() if now is None else now
        return self._release(final=False)

    def held_too_long(self, *, now: float) -> bool:
        return self.pending_since is not None and now - self.pending_since >= HOLD_SECONDS

    def flush(self) -> list[tuple[str, str]]:
        """Everything held, masked: at the end of the output (or after HOLD_SECONDS)."""
        return self._release(final=True)

    def _release(self, *, final: bool) -> list[tuple[str, str]]:
        full = "".join(text for _, text in self.pending)
        spans = [m.span() for m in self.pattern.finditer(full)] if self.variants else []
        keep_from = len(full) if final else self._hold_from(full, spans[-1][1] if spans else 0)
        out: list[list[str]] = []
        position = 0
        rest: list[list[str]] = []
        for stream, text in self.pending:
            start, end = position, position + len(text)
            position = end
            released, held = self._cut(text, start, keep_from, spans)
            if released:
                if out and out[-1][0] == stream:
                    out[-1][1] += released
                else:
                    out.append([stream, released])
            if held:
                rest.append([stream, held])
        self.pending = rest
        if not rest:
            self.pending_since = None
        return [(stream, text) for stream, text in out]

    @staticmethod
    def _cut(text: str, start: int, keep_from: int, spans) -> tuple[str, str]:
        """This segment's released part, masked, and its held part. A secret split over
        segments is masked once, in the segment where it starts."""
        cut = max(0, min(len(text), keep_from - start))
        released, held = text[:cut], text[cut:]
        pieces, position = [], 0
        for span_start, span_end in spans:
            a, b = span_start - start, span_end - start
            if b <= 0 or a >= cut:
                continue
            pieces.append(released[position : max(a, 0)])
            if a >= 0:
                pieces.append(MASK)
            position = min(b, cut)
        if pieces:
            pieces.append(released[position:])
            released = "".join(pieces)
        return released, held

    def _hold_from(self, full: str, after: int) -> int:
        """Where the longest suffix of ``full`` that may become a secret starts (none:
        the end), at or after ``after``."""
        for i in range(max(after, len(full) - self.window), len(full)):
            if full[i] in LINE_BREAKS:
                continue
            tail = "".join(c for c in full[i:] if c not in LINE_BREAKS)
            if any(v.startswith(tail) and len(tail) < len(v) for v in self.variants):
                return i
        return len(full)
