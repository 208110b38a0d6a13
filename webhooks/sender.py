"""The sender: the relay's tick (events.hooks.relay_tick) sends due webhook deliveries.

Each tick records the answers that came in, claims as many due deliveries as there are
free threads (HODEI_WEBHOOK_THREADS) and hands them to the threads, then keeps doing so
as answers come, for at most ``TICK_BUDGET_SECONDS``, so a burst of deliveries to fast
receivers flows without waiting for the relay's next pass, and a hanging receiver holds
the relay no longer than that. The threads only POST (webhooks.transport); the database
is the tick's, on the relay's own thread, so a thread never holds a connection or a
transaction while it waits on a receiver.

A relay that stops with deliveries in flight records their answers at exit (the thread
pool's threads are joined first, each within the timeout); one killed outright leaves
their leases to run out, and they are sent again: receivers may see a delivery twice
(the same X-Hodei-Delivery), never lose one."""

import atexit
import logging
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from django.conf import settings

from webhooks import services, transport

log = logging.getLogger("hodei.webhooks")

TICK_BUDGET_SECONDS = 0.4


class Sender:
    def __init__(self, *, threads: int | None = None):
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: dict[Future, services.Claim] = {}
        self._lock = threading.Lock()

    @property
    def threads(self) -> int:
        return self._threads or settings.HODEI_WEBHOOK_THREADS

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="webhook")
            atexit.register(self.close)
        return self._pool

    def harvest(self) -> int:
        """Record the answers that have come; how many."""
        done = [future for future in self._in_flight if future.done()]
        for future in done:
            claim = self._in_flight.pop(future)
            services.delivery_record_attempt(claim=claim, result=future.result())
        return len(done)

    def submit(self) -> int:
        """Claim due deliveries for the free threads and start sending them; how many."""
        per_subscription = Counter(c.subscription_id for c in self._in_flight.values())
        claims = services.deliveries_claim(
            limit=self.threads - len(self._in_flight),
            in_flight=per_subscription,
            per_subscription=max(1, self.threads // 4),
        )
        timeout = settings.HODEI_WEBHOOK_TIMEOUT_SECONDS
        for claim in claims:
            future = self._executor().submit(transport.post, claim.request, timeout=timeout)
            self._in_flight[future] = claim
        return len(claims)

    def tick(self, *, budget_seconds: float = TICK_BUDGET_SECONDS) -> int:
        """One pass (see the module's docstring); the attempts recorded."""
        with self._lock:  # one tick at a time (a test may drive one while a relay runs)
            deadline = time.monotonic() + budget_seconds
            recorded = self.harvest()
            self.submit()
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                done, _ = wait(self._in_flight, timeout=remaining, return_when=FIRST_COMPLETED)
                if not done:
                    break
                recorded += self.harvest()
                self.submit()
            return recorded

    def close(self) -> None:
        """Wait for the sends in flight (each ends within the timeout) and record them."""
        if self._pool is None:
            return
        self._pool.shutdown(wait=True)
        self._pool = None
        try:
            self.harvest()
        except Exception:  # at exit: the database may be gone; the leases run out
            log.exception("could not record the last webhook answers")


sender = Sender()


def send_due() -> None:
    """The events.hooks.relay_tick listener."""
    sender.tick()
