import ipaddress
import re
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from events.types import EVENT_TYPES
from hodei.exceptions import InvalidTransition
from hodei.lib import clock
from hodei.lib import secrets as hodei_secrets
from hodei.lib.ids import uuid7
from hodei.lib.validators import plain_text
from webhooks.choices import DeliveryStatus

# Test events go to the one subscription they test, never by subscription.
TEST_EVENT = "webhook.test"
SUBSCRIBABLE_TYPES = frozenset(EVENT_TYPES) - {TEST_EVENT}
# The kinds of event ("execution" in "execution.finished"): "execution.*" subscribes to
# every event of a kind, "*" to every event.
EVENT_KINDS = frozenset(name.split(".", 1)[0] for name in SUBSCRIBABLE_TYPES)
MAX_EVENT_TYPES = 50
# Receivers verify deliveries with the secret: a short one could be guessed offline from
# a single signed body (GitHub asks for high entropy; we ask for 16 characters at least).
MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 256
MAX_URL_LENGTH = 2000
# A host name's labels (RFC 1123) or an IPv4 address; single labels too ("receiver", a
# compose service), which Django's URLValidator refuses.
HOSTNAME = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def validate_receiver_url(value: str) -> None:
    """An http:// or https:// URL with a host, and no credentials in it (the URL is shown
    and logged; receivers authenticate deliveries by their signature)."""
    if not isinstance(value, str) or not value:
        raise ValidationError("Give the receiver's http:// or https:// URL.")
    if len(value) > MAX_URL_LENGTH:
        raise ValidationError(f"At most {MAX_URL_LENGTH} characters.")
    if any(char.isspace() or not char.isprintable() for char in value):
        raise ValidationError("A URL has no spaces or control characters.")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise ValidationError("Not a valid URL.") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValidationError("Must be an http:// or https:// URL.")
    if "@" in parts.netloc:
        raise ValidationError(
            "Credentials in the URL are not allowed: receivers verify the X-Hodei-Signature "
            "header instead."
        )
    host = parts.hostname or ""
    if parts.netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValidationError("Not a valid IPv6 address.") from None
    elif not HOSTNAME.fullmatch(host):
        raise ValidationError("The URL needs a valid host name (ASCII; punycode for others).")


def validate_event_types(value) -> None:
    """A non-empty list of event types: known ones, "kind.*" or "*"."""
    if not isinstance(value, list) or not value:
        raise ValidationError('Give at least one event type (or "*" for every event).')
    if len(value) > MAX_EVENT_TYPES:
        raise ValidationError(f"At most {MAX_EVENT_TYPES} event types.")
    for name in value:
        if not isinstance(name, str):
            raise ValidationError("Event types are strings.")
        if name == "*" or name in SUBSCRIBABLE_TYPES:
            continue
        if name == TEST_EVENT:
            raise ValidationError(
                f"{TEST_EVENT} is sent by a subscription's test action, to it alone; it "
                "cannot be subscribed to."
            )
        if name.endswith(".*") and name[:-2] in EVENT_KINDS:
            continue
        raise ValidationError(
            f"Unknown event type {name!r}: use one of {', '.join(sorted(SUBSCRIBABLE_TYPES))}, "
            f"a kind with a wildcard ({', '.join(f'{k}.*' for k in sorted(EVENT_KINDS))}) "
            'or "*".'
        )


def validate_secret(value: str) -> None:
    """A secret someone chose (one generated is longer)."""
    if not isinstance(value, str) or not MIN_SECRET_LENGTH <= len(value) <= MAX_SECRET_LENGTH:
        raise ValidationError(
            f"At least {MIN_SECRET_LENGTH} characters (at most {MAX_SECRET_LENGTH}); omit it "
            "to have one generated."
        )


def type_matches(patterns: list[str], event_type: str) -> bool:
    kind = event_type.split(".", 1)[0]
    return any(p == "*" or p == event_type or p == f"{kind}.*" for p in patterns)


class Subscription(models.Model):
    """A webhook: where to POST which events. Its secret signs every delivery; it is
    stored encrypted (HODEI_SECRETS_KEY) and never shown after it is set. The optional
    pipeline, job and schedule narrow it to events about them (all that are set must
    match)."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    url = models.CharField(
        "URL",
        max_length=MAX_URL_LENGTH,
        validators=[validate_receiver_url],
        help_text="The receiver: an http:// or https:// URL that takes a JSON POST.",
    )
    description = models.CharField(max_length=200, blank=True, validators=[plain_text])
    encrypted_secret = models.TextField(editable=False)
    event_types = models.JSONField(
        default=list,
        validators=[validate_event_types],
        help_text='Event types, such as execution.finished; "execution.*" for every event '
        'of a kind, "*" for every event.',
    )
    pipeline = models.ForeignKey(
        "orchestrator.Pipeline",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhook_subscriptions",
        help_text="Only events about this pipeline (its runs, its jobs' executions).",
    )
    job = models.ForeignKey(
        "orchestrator.Job",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhook_subscriptions",
        help_text="Only events about this job (its executions and schedules).",
    )
    schedule = models.ForeignKey(
        "scheduler.Schedule",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhook_subscriptions",
        help_text="Only events about this schedule (its slots and what they started).",
    )
    enabled = models.BooleanField(
        default=True, help_text="Unticked: nothing is sent, and due retries fail."
    )
    created_at = models.DateTimeField(default=clock.now, editable=False)
    updated_at = models.DateTimeField(default=clock.now, editable=False)

    class Meta:
        ordering = ["-id"]
        verbose_name = "webhook subscription"

    def __str__(self) -> str:
        return self.description or self.url

    def set_secret(self, secret: str) -> None:
        self.encrypted_secret = hodei_secrets.encrypt(secret)

    def signing_secret(self) -> str:
        return hodei_secrets.decrypt(self.encrypted_secret)

    def wants(self, event_type: str) -> bool:
        return type_matches(self.event_types, event_type)


def retry_delay_seconds(attempts: int) -> float:
    """The wait after the ``attempts``-th failed attempt: HODEI_WEBHOOK_BACKOFF_SECONDS,
    doubling each time, at most HODEI_WEBHOOK_MAX_BACKOFF_SECONDS."""
    base = settings.HODEI_WEBHOOK_BACKOFF_SECONDS
    return min(base * 2 ** min(attempts - 1, 40), settings.HODEI_WEBHOOK_MAX_BACKOFF_SECONDS)


def retry_window() -> timedelta:
    return timedelta(hours=settings.HODEI_WEBHOOK_RETRY_HOURS)


class Delivery(models.Model):
    """One event for one subscription, and where its sending stands: pending until a 2xx
    answer (succeeded) or until retrying would pass ``give_up_at`` (failed). Every
    attempt is a DeliveryAttempt. Receivers see the event id as X-Hodei-Delivery, the
    same on every attempt and redelivery."""

    id = models.BigAutoField(primary_key=True)
    subscription = models.ForeignKey(
        Subscription,
        on_delete=models.CASCADE,
        related_name="deliveries",
        db_index=False,  # the (subscription, -id) index serves it
    )
    event = models.ForeignKey(
        "events.Event",
        on_delete=models.CASCADE,
        related_name="webhook_deliveries",
        db_index=False,  # the unique (event, subscription) index serves it
    )
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=clock.now)
    give_up_at = models.DateTimeField(help_text="No retry is scheduled past this.")
    leased_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Being sent: claimed by a relay until then (the claim's token, too).",
    )
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=clock.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            # One delivery per event and subscription: a fan-out run twice adds nothing.
            models.UniqueConstraint(fields=["event", "subscription"], name="webhook_delivery_once")
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="webhook_delivery_due_idx",
            ),
            models.Index(fields=["subscription", "-id"], name="webhook_delivery_sub_idx"),
            models.Index(fields=["status", "-id"], name="webhook_delivery_status_idx"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk}"

    def record_attempt(self, result, *, now: datetime) -> "DeliveryAttempt":
        """The outcome of the attempt this delivery was claimed for (the caller holds
        the row lock and has checked the claim's lease): done on a 2xx answer, else
        retried after the backoff, or failed when that would pass ``give_up_at``."""
        if self.status != DeliveryStatus.PENDING:
            raise InvalidTransition(f"This delivery is {self.status}, not being sent.")
        self.attempt_count += 1
        self.last_status_code = result.status_code
        self.last_error = result.error[:500]
        self.leased_until = None
        if result.is_success:
            self.status, self.finished_at = DeliveryStatus.SUCCEEDED, now
        else:
            retry_at = now + timedelta(seconds=retry_delay_seconds(self.attempt_count))
            if retry_at > self.give_up_at:
                self.status, self.finished_at = DeliveryStatus.FAILED, now
            else:
                self.next_attempt_at = retry_at
        self.save(
            update_fields=[
                "attempt_count",
                "last_status_code",
                "last_error",
                "leased_until",
                "status",
                "finished_at",
                "next_attempt_at",
            ]
        )
        return DeliveryAttempt.objects.create(
            delivery=self,
            subscription_id=self.subscription_id,
            number=self.attempt_count,
            attempted_at=result.attempted_at,
            status_code=result.status_code,
            duration_ms=result.duration_ms,
            response_body=result.response_body,
            error=result.error[:500],
            is_success=result.is_success,
        )

    @classmethod
    def lease(cls, ids: list, *, until: datetime) -> None:
        """Claimed for sending until ``until`` (rows the caller holds locked): nobody else
        sends them meanwhile."""
        cls.objects.filter(pk__in=ids).update(leased_until=until)

    def give_up(self, reason: str, *, now: datetime) -> None:
        """Fail a pending delivery without sending it (its subscription is disabled)."""
        if self.status != DeliveryStatus.PENDING:
            raise InvalidTransition(f"This delivery is {self.status}, not pending.")
        self.status, self.finished_at = DeliveryStatus.FAILED, now
        self.last_error, self.leased_until = reason[:500], None
        self.save(update_fields=["status", "finished_at", "last_error", "leased_until"])

    def redeliver(self, *, now: datetime) -> None:
        """Send again now, and retry as a new delivery would (for the retry window from
        now). A delivery being sent keeps its lease: its answer is recorded, and it is not
        sent twice at once."""
        self.status, self.finished_at = DeliveryStatus.PENDING, None
        self.next_attempt_at, self.give_up_at = now, now + retry_window()
        self.save(update_fields=["status", "finished_at", "next_attempt_at", "give_up_at"])


class DeliveryAttempt(models.Model):
    """One POST of a delivery and its answer (history: never changed)."""

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    # Also on the attempt (it is the delivery's) so that the subscription list counts its
    # failures of the last day with one index range, not a join over every delivery.
    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    number = models.PositiveIntegerField()
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField()
    response_body = models.TextField(blank=True, help_text="The answer's first KiB.")
    error = models.CharField(max_length=500, blank=True)
    is_success = models.BooleanField()

    class Meta:
        ordering = ["delivery", "number"]
        indexes = [
            models.Index(
                fields=["subscription", "attempted_at"],
                condition=models.Q(is_success=False),
                name="webhook_attempt_failed_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"
