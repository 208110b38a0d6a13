"""Sub-second firing for django-q2 schedules.

django-q2 looks at its schedules from its cluster's guard loop about every 30 s (a fixed
interval). The ticker acts the moment the earliest schedule falls due: it sleeps until
that ``next_run`` (at most a second, so it also notices schedules changed elsewhere),
and wakes at once on the ``hodei_schedules`` notification sent when a schedule is
created or moved. It then fires every due Hodei schedule itself, in a few transactions
(``schedules_fire_due``), and calls django-q2's own ``scheduler()`` for the rest
(django-q2's periodic tasks, or a Hodei schedule left over: one task each, as django-q2
fires them). Several tickers (one per qcluster) are safe: Hodei's schedules are locked
with SKIP LOCKED (each ticker takes its own), django-q2 locks its due rows
(``select_for_update``), and Hodei's (schedule, slot) history is unique."""

import logging
import select
import time

from django.db.models import Min
from django.utils import timezone
from django_q.models import Schedule as EngineSchedule
from django_q.scheduler import scheduler as engine_scheduler

from hodei.lib.listen import Listener
from scheduler.health import cluster_seen
from scheduler.services import SCHEDULES_CHANNEL, TICKER_HORIZON_SECONDS, schedules_fire_due

log = logging.getLogger("hodei.scheduler")
# The ticker tells /health that this qcluster is alive this often.
SEEN_EVERY_SECONDS = 5.0


class Ticker:
    def __init__(self, broker, *, max_wait: float = TICKER_HORIZON_SECONDS):
        self.broker = broker
        self.max_wait = max_wait
        self.listener = Listener([SCHEDULES_CHANNEL])
        self.listener.start()
        self._seen_at = 0.0

    def next_due(self):
        return EngineSchedule.objects.exclude(repeats=0).aggregate(due=Min("next_run"))["due"]

    def step(self) -> bool:
        """Fire what is due, or wait until something may be. Returns whether it fired."""
        if time.monotonic() - self._seen_at >= SEEN_EVERY_SECONDS:
            cluster_seen()
            self._seen_at = time.monotonic()
        due = self.next_due()
        now = timezone.now()
        # django-q2 fires rows with next_run < now (strictly).
        if due is not None and due < now:
            # Hodei's own schedules first, all of them here in a few transactions (a
            # burst of a hundred is not a hundred tasks); their engine rows move on, so
            # django-q2 fires only what is left: its own periodic tasks, and anything
            # this could not fire (then one task each, as before).
            try:
                schedules_fire_due(now=now)
            except Exception:
                log.exception("ticker: firing due schedules failed; leaving them to tasks")
            engine_scheduler(broker=self.broker)
            return True
        wait = self.max_wait
        if due is not None:
            wait = min(wait, (due - now).total_seconds() + 0.001)
        self.wait(wait)
        return False

    def wait(self, seconds: float) -> None:
        if not self.listener.alive and not self.listener.start():
            time.sleep(seconds)
            return
        try:
            ready, _, _ = select.select([self.listener.fileno()], [], [], max(seconds, 0))
        except InterruptedError:
            return
        if ready:
            self.listener.drain()

    def close(self) -> None:
        self.listener.close()
