"""Webhook subscriptions and their deliveries.

Deliveries are made in the event relay, never where an event happens: the relay's
dispatch stage hands each batch of events to ``deliveries_fan_out`` (a consumer of
events.hooks), which writes one pending Delivery per matching subscription in the
relay's transaction; its tick runs the sender (webhooks.sender), which claims due
deliveries (``deliveries_claim``), POSTs them on its threads and records each answer
(``delivery_record_attempt``). A slow receiver costs a sender thread, never a request
or an execution's settling.

Locking: a claim takes due rows with ``FOR UPDATE SKIP LOCKED`` (several relays claim
disjoint rows) and leases them (``leased_until``, also the claim's token) before any
HTTP; recording an answer locks the row and checks the lease is still the claim's, so
an answer that comes after its lease ran out (the delivery since claimed again) changes
nothing. Redelivering locks the row too."""

import logging
import secrets as token_generator
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from events.models import Event
from events.services import event_emit
from hodei.exceptions import Conflict, InvalidInput
from hodei.lib import clock
from hodei.lib import secrets as hodei_secrets
from orchestrator.models import Job, Pipeline
from pipelines.models import PipelineRun
from scheduler.models import Schedule
from webhooks import transport
from webhooks.choices import DeliveryStatus
from webhooks.models import (
    TEST_EVENT,
    Delivery,
    DeliveryAttempt,
    Subscription,
    retry_window,
    validate_event_types,
    validate_receiver_url,
    validate_secret,
)

log = logging.getLogger("hodei.webhooks")

SETTINGS = ("url", "description", "event_types", "pipeline", "job", "schedule", "enabled")


# -- subscriptions -----------------------------------------------------------------


def check_secret(secret: str) -> None:
    try:
        validate_secret(secret)
    except ValidationError as exc:
        raise InvalidInput("Invalid secret.", fields={"secret": exc.messages}) from None


def generate_secret() -> str:
    return token_generator.token_urlsafe(32)


def _check(fields: dict) -> None:
    # The model's validators, for callers other than the API and the admin's form (which
    # run them already).
    errors = {}
    for name, validate in (("url", validate_receiver_url), ("event_types", validate_event_types)):
        if name in fields:
            try:
                validate(fields[name])
            except ValidationError as exc:
                errors[name] = exc.messages
    if errors:
        raise InvalidInput(f"Invalid input: {', '.join(sorted(errors))}.", fields=errors)


def _given(secret: str | None) -> str | None:
    """A secret given to set, or None: omitted, blank, or the mask (a GET body sent back)."""
    if secret is None or secret == "" or secret == hodei_secrets.MASK:
        return None
    check_secret(secret)
    return secret


@transaction.atomic
def subscription_create(
    *,
    url: str,
    event_types: list[str],
    secret: str | None = None,
    description: str = "",
    pipeline: Pipeline | None = None,
    job: Job | None = None,
    schedule: Schedule | None = None,
    enabled: bool = True,
) -> tuple[Subscription, str | None]:
    """A new subscription, and its secret if one was generated (shown once: it is
    stored encrypted and never returned again)."""
    _check({"url": url, "event_types": event_types})
    chosen = _given(secret)
    generated = None if chosen else generate_secret()
    now = clock.now()
    subscription = Subscription(
        url=url,
        event_types=list(dict.fromkeys(event_types)),
        description=description,
        pipeline=pipeline,
        job=job,
        schedule=schedule,
        enabled=enabled,
        created_at=now,
        updated_at=now,
    )
    subscription.set_secret(chosen or generated)
    subscription.save()
    log.info("webhook subscription %s created for %s", subscription.pk, subscription.url)
    return subscription, generated


@transaction.atomic
def subscription_update(
    *, subscription: Subscription, secret: str | None = None, **fields
) -> Subscription:
    """Change the given settings (a PATCH); ``secret`` replaces the secret unless it is
    omitted or the mask."""
    unknown = set(fields) - set(SETTINGS)
    if unknown:
        raise TypeError(f"Unknown fields: {sorted(unknown)}")
    _check(fields)
    if "event_types" in fields:
        fields["event_types"] = list(dict.fromkeys(fields["event_types"]))
    for name, value in fields.items():
        setattr(subscription, name, value)
    changed = [*fields, "updated_at"]
    chosen = _given(secret)
    if chosen:
        subscription.set_secret(chosen)
        changed.append("encrypted_secret")
    subscription.updated_at = clock.now()
    subscription.save(update_fields=changed)
    return subscription


def subscription_delete(*, subscription: Subscription) -> None:
    """Delete it with its deliveries (their events stay)."""
    subscription.delete()


@transaction.atomic
def subscription_test(*, subscription: Subscription) -> Delivery:
    """Send a ``webhook.test`` event to this subscription alone: a pending delivery the
    relay sends within a second (the request that asks never waits on the receiver).
    409 for a disabled subscription, which is sent nothing."""
    if not subscription.enabled:
        raise Conflict("This subscription is disabled: enable it to send it a test event.")
    event = event_emit(
        TEST_EVENT,
        subject=("webhook", subscription.pk),
        ids={},
        payload={
            "subscription_id": str(subscription.pk),
            "message": "A test event from Hodei: this subscription works.",
        },
    )
    return Delivery.objects.create(
        subscription=subscription,
        event=event,
        next_attempt_at=event.created_at,
        give_up_at=event.created_at + retry_window(),
        created_at=event.created_at,
    )


# -- fan-out: events to deliveries -----------------------------------------------


def deliveries_fan_out(events: list[Event]) -> int:
    """The events.hooks.consumers listener: one pending delivery per (event, enabled
    subscription that wants it), in bulk, in the relay's dispatch transaction. Test
    events are not fanned out: they go to one subscription, which has its delivery
    already. Costs one query per batch, plus one or two to find the pipeline of
    executions when a subscription filters on pipelines."""
    subscriptions = list(Subscription.objects.filter(enabled=True))
    events = [e for e in events if e.type != TEST_EVENT]
    if not subscriptions or not events:
        return 0
    pipelines = _pipelines_of(events) if any(s.pipeline_id for s in subscriptions) else {}
    now = clock.now()
    give_up_at = now + retry_window()
    rows = [
        Delivery(
            subscription=subscription,
            event=event,
            next_attempt_at=now,
            give_up_at=give_up_at,
            created_at=now,
        )
        for event in events
        for subscription in subscriptions
        if _wanted(subscription, event, pipelines.get(event.pk))
    ]
    # ignore_conflicts: the unique (event, subscription) makes a second fan-out of the
    # same batch (a relay that died before marking it dispatched) add nothing.
    Delivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    return len(rows)


def _wanted(subscription: Subscription, event: Event, pipeline_id: str | None) -> bool:
    if not subscription.wants(event.type):
        return False
    ids = event.subject_ids
    if subscription.job_id and ids.get("job_id") != str(subscription.job_id):
        return False
    if subscription.schedule_id and ids.get("schedule_id") != str(subscription.schedule_id):
        return False
    return not subscription.pipeline_id or pipeline_id == str(subscription.pipeline_id)


def _pipelines_of(events: list[Event]) -> dict[int, str]:
    """event id -> the pipeline it concerns: its own pipeline_id, else its job's pipeline,
    else its pipeline run's (an execution's events name its job and run, not its
    pipeline). Two queries for the whole batch."""
    job_ids, run_ids = set(), set()
    for event in events:
        ids = event.subject_ids
        if not ids.get("pipeline_id"):
            job_ids.update(filter(None, [ids.get("job_id")]))
            run_ids.update(filter(None, [ids.get("pipeline_run_id")]))
    job_pipeline = _pipeline_of_each(Job, job_ids)
    run_pipeline = _pipeline_of_each(PipelineRun, run_ids)
    found = {}
    for event in events:
        ids = event.subject_ids
        pipeline = (
            ids.get("pipeline_id")
            or job_pipeline.get(ids.get("job_id"))
            or run_pipeline.get(ids.get("pipeline_run_id"))
        )
        if pipeline:
            found[event.pk] = pipeline
    return found


def _pipeline_of_each(model, pks: set[str]) -> dict[str, str]:
    if not pks:
        return {}
    rows = model.objects.filter(pk__in=pks).values_list("pk", "pipeline_id")
    return {str(pk): str(pipeline) for pk, pipeline in rows}


# -- sending ------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A delivery leased to this sender until ``lease``, and what to POST."""

    delivery_id: int
    subscription_id: UUID
    lease: datetime
    request: transport.OutgoingRequest


def lease_seconds() -> float:
    # Connect, answer and body waits each up to the timeout, plus slack for a busy host.
    return 3 * settings.HODEI_WEBHOOK_TIMEOUT_SECONDS + 30


def deliveries_claim(
    *,
    limit: int,
    in_flight: Mapping[UUID, int] | None = None,
    per_subscription: int = 2,
    now: datetime | None = None,
) -> list[Claim]:
    """Lease up to ``limit`` due deliveries, oldest due first, at most
    ``per_subscription`` in flight per subscription counting ``in_flight`` (so that a
    hanging receiver with a backlog holds two threads, not all). A due delivery of a
    disabled subscription fails instead of being sent."""
    if limit <= 0:
        return []
    now = now or clock.now()
    in_flight = dict(in_flight or {})
    lease = now + timedelta(seconds=lease_seconds())
    claims = []
    with transaction.atomic():
        # SKIP LOCKED: another relay's claim skips these rows instead of waiting, and
        # takes others. The lease (checked again here and by whoever records) keeps a
        # row from being sent twice once this short transaction has committed.
        candidates = (
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("subscription", "event")
            .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
            .exclude(subscription_id__in=[s for s, n in in_flight.items() if n >= per_subscription])
            .order_by("next_attempt_at", "id")[: limit * 4]
        )
        for delivery in candidates:
            subscription = delivery.subscription
            if not subscription.enabled:
                delivery.give_up("Its subscription is disabled.", now=now)
                continue
            if len(claims) >= limit or in_flight.get(subscription.pk, 0) >= per_subscription:
                continue
            in_flight[subscription.pk] = in_flight.get(subscription.pk, 0) + 1
            event = delivery.event
            claims.append(
                Claim(
                    delivery_id=delivery.pk,
                    subscription_id=subscription.pk,
                    lease=lease,
                    request=transport.request_for(
                        url=subscription.url,
                        secret=subscription.signing_secret(),
                        event_id=event.pk,
                        event_type=event.type,
                        message=event.as_message(),
                    ),
                )
            )
        Delivery.lease([claim.delivery_id for claim in claims], until=lease)
    return claims


@transaction.atomic
def delivery_record_attempt(
    *, claim: Claim, result: transport.AttemptResult, now: datetime | None = None
) -> DeliveryAttempt | None:
    """Record the answer to a claimed delivery; None (nothing changed) when the claim's
    lease is no longer the delivery's."""
    now = now or clock.now()
    # Locked: a redelivery (or a second recording) waits for this read-then-write.
    delivery = Delivery.objects.select_for_update().filter(pk=claim.delivery_id).first()
    if (
        delivery is None
        or delivery.leased_until != claim.lease
        or delivery.status != DeliveryStatus.PENDING
    ):
        log.warning(
            "webhook delivery %s: an answer came after its lease ran out (or the delivery "
            "was deleted); not recorded",
            claim.delivery_id,
        )
        return None
    attempt = delivery.record_attempt(result, now=now)
    if delivery.status == DeliveryStatus.FAILED:
        log.warning(
            "webhook delivery %s of event %s to %s failed after %d attempt(s): %s",
            delivery.pk,
            delivery.event_id,
            claim.request.url,
            delivery.attempt_count,
            result.error or f"HTTP {result.status_code}",
        )
    elif not result.is_success:
        log.info(
            "webhook delivery %s to %s: attempt %d failed (%s); retrying at %s",
            delivery.pk,
            claim.request.url,
            delivery.attempt_count,
            result.error or f"HTTP {result.status_code}",
            delivery.next_attempt_at.isoformat(),
        )
    return attempt


@transaction.atomic
def delivery_redeliver(*, delivery: Delivery) -> Delivery:
    """Send a delivery again now (same X-Hodei-Delivery id), retrying for a new retry
    window; 409 when its subscription is disabled."""
    # Locked: the sender may be recording an answer to this very delivery.
    delivery = (
        Delivery.objects.select_for_update().select_related("subscription").get(pk=delivery.pk)
    )
    if not delivery.subscription.enabled:
        raise Conflict("Its subscription is disabled: enable it to redeliver.")
    delivery.redeliver(now=clock.now())
    return delivery
