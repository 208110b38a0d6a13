"""The real `manage.py relayevents` process delivering webhooks, on PostgreSQL."""

import pytest

from events.services import event_emit
from tests.agent.conftest import drive
from tests.factories import JobFactory
from tests.processes import start_relay, stop, wait_for
from webhooks import services
from webhooks.models import Delivery, DeliveryAttempt
from workermanager.services import execution_enqueue

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def relay_env(child_env: dict) -> dict:
    return {
        **child_env,
        "HODEI_NATS_URL": "",
        "HODEI_RELAY_POLL_SECONDS": "0.1",
        "HODEI_WEBHOOK_TIMEOUT_SECONDS": "2",
        "HODEI_WEBHOOK_BACKOFF_SECONDS": "0.2",
    }


def test_the_relay_delivers_a_real_executions_finished_event(child_env, receiver, make_agent):
    hook = receiver(statuses=[500])  # the first attempt fails: the relay retries it
    job = JobFactory(command="echo hi")
    subscription, secret = services.subscription_create(
        url=hook.url, event_types=["execution.finished"], job=job
    )
    relay = start_relay(relay_env(child_env))
    try:
        execution = drive(make_agent(), execution_enqueue(job=job))
        first, second = hook.wait_for(2, timeout=20)
        wait_for(lambda: Delivery.objects.filter(status="succeeded").exists(), timeout=10)
    finally:
        stop(relay)
    assert second.signed_with(secret) and second.body == first.body
    assert second.headers["X-Hodei-Event"] == "execution.finished"
    message = second.json
    assert message["type"] == "execution.finished"
    assert message["execution_id"] == str(execution.pk) and message["job_id"] == str(job.pk)
    assert message["data"]["status"] == "succeeded" and message["data"]["exit_code"] == 0
    assert second.headers["X-Hodei-Delivery"] == str(message["id"])
    delivery = Delivery.objects.get(subscription=subscription)
    assert [a.status_code for a in delivery.attempts.all()] == [500, 200]
    assert secret not in relay.log_path.read_text()


def test_a_relay_stopped_mid_send_records_the_answer_before_it_exits(child_env, receiver):
    hook = receiver(delay=0.7)
    services.subscription_create(url=hook.url, event_types=["*"])
    event_emit("worker.online", subject=("worker", 1), ids={}, payload={})
    relay = start_relay(relay_env(child_env))
    try:
        hook.wait_for(1, timeout=20)  # in flight
    finally:
        assert stop(relay) == 0
    [attempt] = DeliveryAttempt.objects.all()
    assert attempt.status_code == 200 and attempt.duration_ms >= 600
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.leased_until) == ("succeeded", None)
