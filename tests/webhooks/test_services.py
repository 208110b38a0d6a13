"""Fan-out: which subscriptions get a delivery of which event (types, wildcards,
pipeline, job and schedule filters, disabled ones), in bulk; test events; redelivery."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from events.models import Event
from events.relay import Relay
from events.services import event_emit
from hodei.exceptions import Conflict, InvalidInput
from hodei.lib import secrets as hodei_secrets
from pipelines import services as pipelines
from scheduler.services import schedule_create
from tests.factories import JobFactory, PipelineFactory, ScheduleFactory
from tests.webhooks.conftest import SECRET
from webhooks import services
from webhooks.models import Delivery, Subscription, retry_delay_seconds
from workermanager.services import execution_enqueue

pytestmark = pytest.mark.django_db


def subscribe(event_types=("*",), **fields) -> Subscription:
    subscription, _ = services.subscription_create(
        url="http://receiver.test/hook", event_types=list(event_types), secret=SECRET, **fields
    )
    return subscription


def fan_out() -> None:
    relay = Relay()
    while relay.dispatch():
        pass


def delivered(subscription) -> list[str]:
    """The types of the events ``subscription`` got deliveries of, in order."""
    return list(
        Delivery.objects.filter(subscription=subscription)
        .order_by("event_id")
        .values_list("event__type", flat=True)
    )


def worker_event(kind="online"):
    return event_emit(f"worker.{kind}", subject=("worker", 1), ids={}, payload={})


def test_types_and_wildcards_choose_the_events():
    everything = subscribe(["*"])
    workers = subscribe(["worker.*"])
    online = subscribe(["worker.online"])
    both = subscribe(["worker.lost", "execution.queued"])
    worker_event("online")
    worker_event("lost")
    execution_enqueue(command="true")
    fan_out()
    assert delivered(everything) == ["worker.online", "worker.lost", "execution.queued"]
    assert delivered(workers) == ["worker.online", "worker.lost"]
    assert delivered(online) == ["worker.online"]
    assert delivered(both) == ["worker.lost", "execution.queued"]


def test_disabled_subscriptions_get_no_delivery():
    disabled = subscribe(enabled=False)
    worker_event()
    fan_out()
    assert delivered(disabled) == []


def test_a_pipeline_filter_takes_its_runs_and_its_jobs_executions():
    pipeline = PipelineFactory()
    job = JobFactory(pipeline=pipeline, command="true")
    mine = subscribe(["execution.finished", "pipeline_run.*"], pipeline=pipeline)
    other = subscribe(["*"], pipeline=PipelineFactory())
    run = pipelines.pipeline_run_start(pipeline=pipeline)
    [execution] = run.executions.all()

    def finished(**ids):
        event_emit("execution.finished", subject=("execution", 1), ids=ids, payload={})

    finished(execution_id=execution.pk, pipeline_run_id=run.pk)  # through its run
    finished(job_id=job.pk)  # through its job
    finished(job_id=JobFactory().pk)  # another pipeline's job
    event_emit(
        "pipeline_run.started", subject=("run", 1), ids={"pipeline_id": pipeline.pk}, payload={}
    )
    fan_out()
    assert delivered(mine) == ["execution.finished"] * 2 + ["pipeline_run.started"]
    assert delivered(other) == []


def test_job_and_schedule_filters():
    job, other_job = JobFactory(), JobFactory()
    schedule = ScheduleFactory(job=job)
    by_job = subscribe(job=job)
    by_schedule = subscribe(schedule=schedule)
    both = subscribe(job=job, schedule=schedule)
    execution_enqueue(job=job)
    execution_enqueue(job=other_job)
    event_emit(
        "schedule.fired",
        subject=("schedule", schedule.pk),
        ids={"schedule_id": schedule.pk, "job_id": job.pk},
        payload={},
    )
    worker_event()
    fan_out()
    assert delivered(by_job) == ["execution.queued", "schedule.fired"]
    assert delivered(by_schedule) == ["schedule.fired"]
    assert delivered(both) == ["schedule.fired"]


def test_fan_out_costs_a_few_queries_per_batch_whatever_its_size():
    pipeline = PipelineFactory()
    for _ in range(3):
        subscribe(["execution.*"], pipeline=pipeline)
    subscribe(["*"])
    elsewhere = PipelineFactory()
    jobs = [JobFactory(pipeline=pipeline if i % 2 else elsewhere) for i in range(10)]
    for job in jobs:
        execution_enqueue(job=job)
    with CaptureQueriesContext(connection) as queries:
        Relay().dispatch()
    sql = [
        q["sql"]
        for q in queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "SELECT pg_try_advisory"))
    ]
    # The events, the subscriptions, the jobs' pipelines, one insert, marking dispatched.
    assert len(sql) == 5, sql
    assert Delivery.objects.count() == 5 * 3 + 10


def test_a_second_fan_out_of_the_same_events_adds_nothing():
    subscribe()
    worker_event()
    fan_out()
    Event.objects.update(dispatched_at=None)  # a relay that died before marking them
    fan_out()
    assert Delivery.objects.count() == 1


def test_a_test_event_goes_to_its_subscription_alone():
    target, bystander = subscribe(["worker.*"]), subscribe(["*"])
    delivery = services.subscription_test(subscription=target)
    fan_out()
    assert delivery.event.type == "webhook.test"
    assert delivery.status == "pending" and delivery.next_attempt_at <= delivery.give_up_at
    assert delivered(target) == ["webhook.test"]
    assert delivered(bystander) == []
    assert delivery.event.payload["subscription_id"] == str(target.pk)


def test_a_disabled_subscription_refuses_tests_and_redeliveries():
    subscription = subscribe()
    delivery = services.subscription_test(subscription=subscription)
    services.subscription_update(subscription=subscription, enabled=False)
    with pytest.raises(Conflict):
        services.subscription_test(subscription=subscription)
    with pytest.raises(Conflict):
        services.delivery_redeliver(delivery=delivery)


def test_redelivering_resets_a_finished_delivery_and_its_retry_window(settings):
    subscription = subscribe()
    delivery = services.subscription_test(subscription=subscription)
    Delivery.objects.filter(pk=delivery.pk).update(status="failed", finished_at=delivery.created_at)
    again = services.delivery_redeliver(delivery=delivery)
    assert again.status == "pending" and again.finished_at is None
    assert again.give_up_at > delivery.give_up_at and again.next_attempt_at > delivery.created_at


def test_the_secret_is_stored_encrypted_and_generated_when_omitted():
    subscription, generated = services.subscription_create(
        url="https://example.com/hook", event_types=["*"]
    )
    assert len(generated) >= 32 and generated not in subscription.encrypted_secret
    assert hodei_secrets.is_encrypted(subscription.encrypted_secret)
    assert subscription.signing_secret() == generated
    chosen = subscribe()
    assert chosen.signing_secret() == SECRET
    services.subscription_update(subscription=chosen, secret=hodei_secrets.MASK)
    assert Subscription.objects.get(pk=chosen.pk).signing_secret() == SECRET  # kept
    with pytest.raises(InvalidInput) as caught:
        services.subscription_update(subscription=chosen, secret="short")
    assert "secret" in caught.value.fields


def test_backoff_doubles_from_ten_seconds_to_an_hour(settings):
    settings.HODEI_WEBHOOK_BACKOFF_SECONDS = 10
    settings.HODEI_WEBHOOK_MAX_BACKOFF_SECONDS = 3600
    assert [retry_delay_seconds(n) for n in (1, 2, 3, 9, 10, 200)] == [
        10,
        20,
        40,
        2560,
        3600,
        3600,
    ]


def test_deleting_what_a_subscription_is_about_deletes_it():
    job = JobFactory()
    subscription = subscribe(job=job)
    schedule = schedule_create(job=JobFactory(), cron="*/5 * * * *")
    by_schedule = subscribe(schedule=schedule)
    job.delete()
    schedule.delete()
    assert not Subscription.objects.filter(pk__in=[subscription.pk, by_schedule.pk]).exists()
