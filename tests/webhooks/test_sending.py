"""Deliveries over real HTTP: signed bodies and headers, retries with the same delivery
id, every attempt recorded, giving up, and receivers that hang without holding up other
subscriptions or executions."""

import logging
import threading
import time

import pytest
from django.db import connection

from events.models import Event
from events.relay import Relay
from events.services import event_emit
from hodei import __version__
from tests.agent.conftest import drive
from tests.factories import JobFactory
from tests.webhooks.conftest import SECRET, relay_pass, settle
from webhooks import services, transport
from webhooks.models import Delivery, DeliveryAttempt
from webhooks.sender import Sender
from workermanager.services import execution_enqueue

pytestmark = pytest.mark.django_db


def subscribe(receiver, *, event_types=("*",), secret=SECRET, **fields):
    subscription, _ = services.subscription_create(
        url=receiver.url, event_types=list(event_types), secret=secret, **fields
    )
    return subscription


def emit(type="worker.online", **ids):
    return event_emit(type, subject=("worker", 1), ids=ids, payload={"name": "w1"})


def test_a_delivery_is_a_signed_json_post_with_hodei_headers(receiver, sender):
    hook = receiver()
    subscribe(hook)
    event = emit()
    relay_pass(sender)
    [request] = hook.wait_for(1)
    assert request.signed_with(SECRET)
    assert not request.signed_with(SECRET + "x")
    assert request.json == event.as_message()
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Hodei-Event"] == "worker.online"
    assert request.headers["X-Hodei-Delivery"] == str(event.pk)
    assert request.headers["User-Agent"] == f"Hodei-Webhooks/{__version__}"
    settle(sender, lambda: Delivery.objects.get().status == "succeeded")
    delivery = Delivery.objects.get()
    assert (delivery.attempt_count, delivery.last_status_code) == (1, 200)
    [attempt] = delivery.attempts.all()
    assert attempt.is_success and attempt.status_code == 200 and attempt.response_body == "ok"
    assert attempt.duration_ms >= 0 and attempt.error == ""


def test_a_failed_delivery_is_retried_with_the_same_id_and_every_attempt_is_kept(receiver, sender):
    hook = receiver(statuses=[500, 503], body=b"x" * 5000)
    subscribe(hook)
    event = emit()
    settle(sender, lambda: Delivery.objects.get().status == "succeeded")
    requests = hook.wait_for(3)
    assert [r.headers["X-Hodei-Delivery"] for r in requests] == [str(event.pk)] * 3
    assert all(r.signed_with(SECRET) for r in requests)
    assert len({r.body for r in requests}) == 1  # the same bytes each time
    attempts = list(DeliveryAttempt.objects.order_by("number"))
    assert [(a.number, a.status_code, a.is_success) for a in attempts] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]
    assert len(attempts[0].response_body) == 1024  # the answer's first KiB
    # Exponential backoff: each wait at least the one before (0.05 s, then 0.1 s).
    assert requests[1].at - requests[0].at >= 0.05
    assert requests[2].at - requests[1].at >= 0.1


def test_a_delivery_fails_once_retrying_would_pass_the_retry_window(receiver, sender, settings):
    settings.HODEI_WEBHOOK_RETRY_HOURS = 0.3 / 3600  # 0.3 s
    hook = receiver(status=500)
    subscribe(hook)
    emit()
    delivery = settle(sender, lambda: Delivery.objects.filter(status="failed").first())
    assert delivery.attempt_count == hook.count() >= 2
    assert delivery.finished_at is not None and delivery.last_status_code == 500
    time.sleep(0.3)
    relay_pass(sender)
    assert hook.count() == delivery.attempt_count  # nothing more once failed


def test_an_unreachable_receiver_is_an_attempt_with_its_error(sender, settings):
    settings.HODEI_WEBHOOK_RETRY_HOURS = 0
    services.subscription_create(
        url="http://127.0.0.1:9/hook", event_types=["*"], secret=SECRET
    )  # discard: nothing listens
    emit()
    delivery = settle(sender, lambda: Delivery.objects.filter(status="failed").first())
    [attempt] = delivery.attempts.all()
    assert attempt.status_code is None and not attempt.is_success
    assert "Could not connect" in attempt.error and "refused" in attempt.error.lower()
    assert delivery.last_error == attempt.error


def test_a_redirect_is_a_failed_attempt_not_followed(receiver, sender, settings):
    settings.HODEI_WEBHOOK_RETRY_HOURS = 0
    hook = receiver(status=302)
    subscribe(hook)
    emit()
    delivery = settle(sender, lambda: Delivery.objects.filter(status="failed").first())
    assert delivery.last_status_code == 302 and hook.count() == 1


def test_a_hanging_receiver_does_not_delay_other_subscriptions(receiver, sender):
    hanging = receiver(delay=3.0)  # longer than the 1 s timeout
    fast = receiver()
    subscribe(hanging)
    subscribe(fast)
    for _ in range(5):
        emit()
    started = time.monotonic()
    relay_pass(sender)
    fast.wait_for(5, timeout=1.0)
    assert max(r.at for r in fast.received) - started < 1.0
    assert time.monotonic() - started < 1.0  # the relay's pass did not wait either
    # Whatever its backlog, the hanging receiver holds two threads, not all eight.
    assert hanging.count() <= 2
    failed = settle(
        sender, lambda: DeliveryAttempt.objects.filter(is_success=False).first(), timeout=5
    )
    assert failed.error == "No answer within 1 s." and 900 <= failed.duration_ms < 2500
    assert Delivery.objects.filter(subscription__url=fast.url, status="succeeded").count() == 5


def test_executions_settle_without_waiting_on_receivers(receiver, sender, make_agent):
    hanging = receiver(delay=3.0)
    subscribe(hanging, event_types=["execution.*"])
    job = JobFactory(command="true")
    agent = make_agent()
    started = time.monotonic()
    execution = drive(agent, execution_enqueue(job=job))
    assert execution.status == "succeeded"
    # Waiting on the receiver would cost its 1 s timeout for each of the three events.
    assert time.monotonic() - started < 3.0
    # Settling wrote events and sent nothing: sending is the relay's.
    assert hanging.count() == 0
    assert Event.objects.filter(type="execution.finished").exists()
    relay_pass(sender)
    hanging.wait_for(1)


def test_a_disabled_subscription_gets_nothing(receiver, sender):
    hook = receiver()
    subscription = subscribe(hook, enabled=False)
    emit()
    relay_pass(sender)
    assert not Delivery.objects.exists()
    # A retry that comes due after it is disabled fails instead of being sent.
    services.subscription_update(subscription=subscription, enabled=True)
    emit()
    Relay().dispatch()
    services.subscription_update(subscription=subscription, enabled=False)
    sender.tick(budget_seconds=0.1)
    assert hook.count() == 0
    assert set(Delivery.objects.values_list("status", "last_error")) == {
        ("failed", "Its subscription is disabled.")
    }


def test_a_redelivery_is_sent_again_with_the_same_id(receiver, sender):
    hook = receiver()
    subscribe(hook)
    event = emit()
    delivery = settle(sender, lambda: Delivery.objects.filter(status="succeeded").first())
    services.delivery_redeliver(delivery=delivery)
    settle(sender, lambda: Delivery.objects.get().attempt_count == 2 and hook.count() == 2)
    first, again = hook.received
    assert again.headers["X-Hodei-Delivery"] == first.headers["X-Hodei-Delivery"] == str(event.pk)
    assert again.body == first.body
    assert Delivery.objects.get().status == "succeeded"


def test_a_late_answer_after_the_lease_ran_out_changes_nothing(receiver, sender):
    hook = receiver()
    subscribe(hook)
    emit()
    Relay().dispatch()
    [claim] = services.deliveries_claim(limit=8)
    # Its lease ran out and another relay claimed it again.
    Delivery.objects.update(leased_until=None)
    [again] = services.deliveries_claim(limit=8)
    late = services.delivery_record_attempt(
        claim=claim, result=transport.post(claim.request, timeout=1)
    )
    assert late is None and not DeliveryAttempt.objects.exists()
    assert services.delivery_record_attempt(
        claim=again, result=transport.post(again.request, timeout=1)
    )
    assert DeliveryAttempt.objects.count() == 1


def test_secrets_never_reach_the_logs(receiver, sender, caplog, settings):
    caplog.set_level(logging.DEBUG)
    settings.HODEI_WEBHOOK_RETRY_HOURS = 0.2 / 3600
    bad = receiver(status=500)
    subscribe(bad)
    subscription, generated = services.subscription_create(url=receiver().url, event_types=["*"])
    emit()
    settle(sender, lambda: not Delivery.objects.filter(status="pending").exists())
    services.subscription_test(subscription=subscription)
    settle(sender, lambda: not Delivery.objects.filter(status="pending").exists())
    assert "failed after" in caplog.text  # it did log the failure
    assert SECRET not in caplog.text and generated not in caplog.text


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_relays_never_send_the_same_attempt_twice(receiver):
    hook = receiver(delay=0.05)
    subscribe(hook)
    for _ in range(40):
        emit()
    Relay().dispatch()
    done = threading.Event()

    def run():
        relay_sender = Sender(threads=8)
        try:
            while not done.is_set():
                relay_sender.tick(budget_seconds=0.1)
        finally:
            relay_sender.close()
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        hook.wait_for(40, timeout=20)
        deadline = time.monotonic() + 10
        while Delivery.objects.filter(status="pending").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        done.set()
        for thread in threads:
            thread.join()
    ids = [r.headers["X-Hodei-Delivery"] for r in hook.received]
    assert len(ids) == len(set(ids)) == 40
    assert DeliveryAttempt.objects.count() == 40
    assert not Delivery.objects.exclude(status="succeeded").exists()
