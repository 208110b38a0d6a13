"""Publishing events to NATS JetStream with the maintained client (nats-py).

Each event goes to ``<prefix>.<type>`` (``hodei.execution.finished``) in the stream
HODEI_NATS_STREAM (created if missing, for ``<prefix>.>``), with ``Nats-Msg-Id`` set to
the event id: a republish after a relay crash (published but not yet marked so) is
dropped by the server as a duplicate. Events are published one at a time, in order,
each acknowledged before the next: order per subject holds even across failures."""

import asyncio
import json
import logging
import threading

import nats
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

log = logging.getLogger("hodei.events")

# The server drops a republished event id within this window (a relay restarts well
# within it).
DUPLICATE_WINDOW_SECONDS = 3600.0


async def _quiet(exc: Exception) -> None:
    """The client's own error reports: the relay logs one line per outage instead."""
    log.debug("nats: %s", exc)


class NatsUnavailable(Exception):
    """NATS cannot be reached or refused a publish: try again later."""


class JetStreamPublisher:
    """A connection to NATS on its own event-loop thread, used from synchronous code."""

    def __init__(self, url: str, *, stream: str, prefix: str, timeout: float = 5.0):
        self.url, self.stream, self.prefix, self.timeout = url, stream, prefix, timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._nc = None
        self._js = None

    def _run(self, coro, timeout: float):
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except Exception as exc:
            future.cancel()
            raise NatsUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _connect(self):
        if self._nc is not None and self._nc.is_connected:
            return
        if self._nc is not None:
            await self._close()
        # The client retries a refused first connection by itself unless bounded: one
        # attempt, within the timeout; the relay backs off and tries again.
        self._nc = await asyncio.wait_for(
            nats.connect(
                servers=[self.url],
                connect_timeout=self.timeout,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                error_cb=_quiet,
            ),
            self.timeout,
        )
        self._js = self._nc.jetstream(timeout=self.timeout)
        try:
            await self._js.stream_info(self.stream)
        except NotFoundError:
            await self._js.add_stream(
                StreamConfig(
                    name=self.stream,
                    subjects=[f"{self.prefix}.>"],
                    duplicate_window=DUPLICATE_WINDOW_SECONDS,
                )
            )
            log.info("created JetStream stream %s for %s.>", self.stream, self.prefix)

    async def _publish(self, events) -> list[int]:
        await self._connect()
        done = []
        for event in events:
            try:
                await self._js.publish(
                    f"{self.prefix}.{event.type}",
                    json.dumps(event.as_message(), separators=(",", ":")).encode(),
                    headers={"Nats-Msg-Id": str(event.id)},
                )
            except Exception as exc:
                if done:
                    log.warning("NATS publish stopped after %d event(s): %s", len(done), exc)
                    return done
                raise
            done.append(event.id)
        return done

    def publish(self, events) -> list[int]:
        """Publish ``events`` in order; the ids acknowledged (a prefix of them). Raises
        NatsUnavailable when none could be."""
        return self._run(self._publish(events), timeout=self.timeout * (len(events) + 2))

    async def _close(self):
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            try:
                await nc.close()
            except Exception:  # already gone
                pass

    def reset(self) -> None:
        try:
            self._run(self._close(), timeout=self.timeout)
        except NatsUnavailable:
            pass

    def close(self) -> None:
        self.reset()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
