from datetime import UTC, datetime

from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from hodei.api.fields import id_field
from hodei.lib import clock
from orchestrator.models import Job, Pipeline
from scheduler.cron import CronError, parse_timezone
from scheduler.models import Schedule, ScheduleFire
from scheduler.services import schedule_upcoming

# Postgres and Python both handle these; anything outside is a typo, not a plan.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class ScheduleSerializer(serializers.ModelSerializer):
    job_id = serializers.UUIDField(read_only=True, allow_null=True)
    pipeline_id = serializers.UUIDField(read_only=True, allow_null=True)
    enabled = serializers.BooleanField(read_only=True)
    scheduled_at = serializers.DateTimeField(source="created_at", read_only=True)
    upcoming = serializers.SerializerMethodField()

    class Meta:
        model = Schedule
        fields = [
            "id",
            "job_id",
            "pipeline_id",
            "name",
            "cron",
            "timezone",
            "schedule_time",
            "status",
            "enabled",
            "overlap_policy",
            "misfire_policy",
            "scheduled_at",
            "next_run_at",
            "last_run_at",
            "upcoming",
            "alert_after_seconds",
            "health",
            "health_reason",
            "down_since",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.DateTimeField()))
    def get_upcoming(self, schedule: Schedule) -> list[str]:
        return [clock.iso(t) for t in schedule_upcoming(schedule)]


class ScheduleInputSerializer(serializers.ModelSerializer):
    job_id = id_field(
        Job.objects.all(),
        source="job",
        required=False,
        help_text="The job each slot runs (or give pipeline_id).",
    )
    pipeline_id = id_field(
        Pipeline.objects.all(),
        source="pipeline",
        required=False,
        help_text="The pipeline each slot runs, as a pipeline run (or give job_id).",
    )
    cron = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    schedule_time = serializers.DateTimeField(required=False, allow_null=True, default=None)
    timezone = serializers.CharField(required=False, max_length=64, default="UTC")
    enabled = serializers.BooleanField(required=False, default=True)

    class Meta:
        model = Schedule
        fields = [
            "job_id",
            "pipeline_id",
            "name",
            "cron",
            "timezone",
            "schedule_time",
            "enabled",
            "overlap_policy",
            "misfire_policy",
            "alert_after_seconds",
        ]
        extra_kwargs = {"alert_after_seconds": {"min_value": 1, "max_value": 366 * 86400}}

    def validate_schedule_time(self, value):
        if value is not None and not (EARLIEST <= value <= LATEST):
            raise serializers.ValidationError("Must be between 1970 and 9000.")
        return value

    def validate(self, attrs):
        if self.instance is None and ("job" in attrs) == ("pipeline" in attrs):
            message = "Give exactly one of job_id and pipeline_id."
            raise serializers.ValidationError({"job_id": [message], "pipeline_id": [message]})
        if self.instance is not None and "job" in attrs and "pipeline" in attrs:
            message = "Give at most one of job_id and pipeline_id."
            raise serializers.ValidationError({"job_id": [message], "pipeline_id": [message]})
        # A schedule_time without an offset is a wall-clock time in the schedule's
        # timezone ("09:00 in Europe/Madrid"), not in UTC.
        raw = (
            self.initial_data.get("schedule_time") if isinstance(self.initial_data, dict) else None
        )
        value = attrs.get("schedule_time")
        if value is not None and isinstance(raw, str):
            parsed = parse_datetime(raw)
            if parsed is not None and parsed.tzinfo is None:
                tz_name = attrs.get("timezone") or getattr(self.instance, "timezone", "UTC")
                try:
                    tz = parse_timezone(tz_name)
                except CronError:
                    return attrs  # the service reports the bad timezone
                attrs["schedule_time"] = parsed.replace(tzinfo=tz).astimezone(UTC)
        return attrs


class ScheduleFireSerializer(serializers.ModelSerializer):
    schedule_id = serializers.UUIDField(read_only=True)
    execution_id = serializers.UUIDField(read_only=True, allow_null=True)
    pipeline_run_id = serializers.UUIDField(read_only=True, allow_null=True)
    lag_ms = serializers.IntegerField(read_only=True)

    class Meta:
        model = ScheduleFire
        fields = [
            "id",
            "schedule_id",
            "slot_at",
            "outcome",
            "execution_id",
            "pipeline_run_id",
            "is_manual",
            "detail",
            "fired_at",
            "lag_ms",
        ]
        read_only_fields = fields
