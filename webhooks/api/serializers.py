from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from hodei.api.fields import id_field
from hodei.lib import secrets as hodei_secrets
from hodei.lib.validators import plain_text
from orchestrator.models import Job, Pipeline
from scheduler.models import Schedule
from webhooks.models import (
    MAX_SECRET_LENGTH,
    MAX_URL_LENGTH,
    Delivery,
    DeliveryAttempt,
    Subscription,
    validate_event_types,
    validate_receiver_url,
    validate_secret,
)


class SubscriptionSerializer(serializers.ModelSerializer):
    pipeline_id = serializers.UUIDField(read_only=True, allow_null=True)
    job_id = serializers.UUIDField(read_only=True, allow_null=True)
    schedule_id = serializers.UUIDField(read_only=True, allow_null=True)
    secret = serializers.SerializerMethodField(
        help_text="Always the mask: the secret is write-only. A create that generated one "
        "returns it here, that once."
    )

    class Meta:
        model = Subscription
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "pipeline_id",
            "job_id",
            "schedule_id",
            "enabled",
            "secret",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_secret(self, subscription: Subscription) -> str:
        return hodei_secrets.MASK


def secret_to_set(value: str) -> None:
    if value != hodei_secrets.MASK:  # the mask keeps the current secret
        validate_secret(value)


class SubscriptionInputSerializer(serializers.Serializer):
    url = serializers.CharField(
        max_length=MAX_URL_LENGTH, trim_whitespace=False, validators=[validate_receiver_url]
    )
    description = serializers.CharField(
        max_length=200, required=False, allow_blank=True, validators=[plain_text]
    )
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=64), validators=[validate_event_types]
    )
    secret = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=MAX_SECRET_LENGTH,
        validators=[secret_to_set],
        help_text="At least 16 characters; omitted on create, one is generated and returned "
        f"once. Never returned otherwise; {hodei_secrets.MASK} keeps the current one.",
    )
    pipeline_id = id_field(
        Pipeline.objects.all(),
        source="pipeline",
        required=False,
        allow_null=True,
    )
    job_id = id_field(Job.objects.all(), source="job", required=False, allow_null=True)
    schedule_id = id_field(
        Schedule.objects.all(),
        source="schedule",
        required=False,
        allow_null=True,
    )
    enabled = serializers.BooleanField(required=False)


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    succeeded = serializers.BooleanField(source="is_success")

    class Meta:
        model = DeliveryAttempt
        fields = [
            "number",
            "attempted_at",
            "status_code",
            "duration_ms",
            "response_body",
            "error",
            "succeeded",
        ]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    subscription_id = serializers.UUIDField(read_only=True)
    event_id = serializers.IntegerField(read_only=True)
    event_type = serializers.CharField(source="event.type", read_only=True)
    attempts = DeliveryAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "subscription_id",
            "event_id",
            "event_type",
            "status",
            "attempt_count",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "created_at",
            "finished_at",
            "attempts",
        ]
        read_only_fields = fields
