"""The relay: takes events from the outbox and hands them on.

Each pass (``Relay.step``):
1. publishes unpublished events to NATS JetStream, in id order, when HODEI_NATS_URL is
   set; on failure it backs off (1 s doubling to 60 s) and resumes where it stopped;
2. hands undispatched events to the ``events.hooks.consumers`` listeners (webhooks make
   deliveries of them) in one transaction that marks them dispatched;
3. calls the ``events.hooks.relay_tick`` listeners (due webhook deliveries, the dead-man
   check of schedules): work that must go on even when qcluster is down.

Several relays may run: each stage takes a transaction-scoped advisory lock on
PostgreSQL, so one relay at a time publishes and one dispatches, and the others stand by.
A relay killed mid-batch republishes what it had not marked; NATS drops the duplicates
(``Nats-Msg-Id``)."""

import logging
import threading
import time

from django.conf import settings
from django.db import connection, transaction

from events import hooks
from events.models import Event
from events.nats import JetStreamPublisher, NatsUnavailable
from hodei.lib import clock

log = logging.getLogger("hodei.events")

PUBLISH_LOCK = 0x484F_4445_4901  # "HODEI" 1
DISPATCH_LOCK = 0x484F_4445_4902
MAX_BACKOFF_SECONDS = 60.0


def _try_lock(key: int) -> bool:
    """A transaction-scoped advisory lock on PostgreSQL (always granted elsewhere)."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [key])
        return cursor.fetchone()[0]


class Relay:
    def __init__(self, *, publisher: JetStreamPublisher | None = None, batch: int = 500):
        self.publisher = publisher
        self.batch = batch
        self._backoff = 0.0
        self._retry_at = 0.0

    @classmethod
    def from_settings(cls) -> "Relay":
        publisher = None
        if settings.HODEI_NATS_URL:
            publisher = JetStreamPublisher(
                settings.HODEI_NATS_URL,
                stream=settings.HODEI_NATS_STREAM,
                prefix=settings.HODEI_NATS_SUBJECT_PREFIX,
            )
        return cls(publisher=publisher, batch=settings.HODEI_RELAY_BATCH)

    def publish(self) -> int:
        """Publish the next batch to NATS; how many were acknowledged."""
        if self.publisher is None or time.monotonic() < self._retry_at:
            return 0
        with transaction.atomic():
            if not _try_lock(PUBLISH_LOCK):
                return 0
            events = list(Event.objects.filter(published_at__isnull=True)[: self.batch])
            if not events:
                return 0
            try:
                acked = self.publisher.publish(events)
            except NatsUnavailable as exc:
                self._backoff = min(max(self._backoff * 2, 1.0), MAX_BACKOFF_SECONDS)
                self._retry_at = time.monotonic() + self._backoff
                log.warning(
                    "NATS unavailable (%s); %d event(s) wait, retrying in %.0f s",
                    exc,
                    Event.objects.filter(published_at__isnull=True).count(),
                    self._backoff,
                )
                self.publisher.reset()
                return 0
            if self._backoff:
                log.info("NATS reachable again; publishing resumes")
            self._backoff = 0.0
            Event.objects.filter(pk__in=acked).update(published_at=clock.now())
            return len(acked)

    def dispatch(self) -> int:
        """Hand the next batch to the consumers; how many."""
        with transaction.atomic():
            if not _try_lock(DISPATCH_LOCK):
                return 0
            events = list(Event.objects.filter(dispatched_at__isnull=True)[: self.batch])
            if not events:
                return 0
            hooks.consumers.fire(events)
            Event.objects.filter(pk__in=[e.pk for e in events]).update(dispatched_at=clock.now())
            return len(events)

    def tick(self) -> None:
        # One failing listener must not stop the others, nor the relay.
        hooks.relay_tick.fire_each(log=log)

    def step(self) -> int:
        moved = self.publish() + self.dispatch()
        self.tick()
        return moved

    def run(self, stop: threading.Event, *, poll: float | None = None) -> None:
        poll = settings.HODEI_RELAY_POLL_SECONDS if poll is None else poll
        while not stop.is_set():
            try:
                moved = self.step()
            except Exception:
                log.exception("relay pass failed; retrying")
                connection.close()
                moved = 0
                stop.wait(1.0)
            if moved < self.batch:  # caught up: wait a little
                stop.wait(poll)

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
