import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from events.relay import Relay

log = logging.getLogger("hodei.events")


class Command(BaseCommand):
    help = (
        "Relay events from the outbox to NATS JetStream (when HODEI_NATS_URL is set) and "
        "to webhook subscriptions, and run the dead-man check of schedules. Runs until "
        "SIGTERM or SIGINT; several may run (one is active at a time)."
    )

    def handle(self, *args, **options):
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        relay = Relay.from_settings()
        target = f"NATS {settings.HODEI_NATS_URL}" if settings.HODEI_NATS_URL else "no NATS"
        log.info("event relay started (%s, webhooks)", target)
        try:
            relay.run(stop)
        finally:
            relay.close()
            log.info("event relay stopped")
