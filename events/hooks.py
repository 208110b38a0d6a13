"""What the relay tells the layers above it (hodei.lib.hooks).

``consumers``: each listener is called as ``listener(events)`` with a batch of events not
yet dispatched, oldest first, in the relay's transaction (webhooks turn them into
deliveries); the batch is marked dispatched when it commits.

``relay_tick``: each listener is called as ``listener()`` on every pass of the relay
loop (about twice a second), outside any transaction: work that must go on even when
qcluster is down, such as sending due webhook deliveries and the dead-man check of
schedules. Listeners are idempotent and cheap when there is nothing to do."""

from hodei.lib.hooks import Hook

consumers = Hook("events.consumers")
relay_tick = Hook("events.relay_tick")
