from rest_framework import serializers

from hodei.api.fields import env_field, labels_field
from hodei.lib.validators import plain_text
from orchestrator.choices import CommandType, Network
from orchestrator.models import MAX_TIMEOUT_SECONDS, Job, worker_type_validator
from workermanager.models import Execution, ExecutionLog, ManagedWorker, Worker
from workermanager.selectors import LOG_PAGE, MAX_LOG_PAGE


class ExecutionSerializer(serializers.ModelSerializer):
    job_id = serializers.UUIDField(read_only=True)
    worker_id = serializers.UUIDField(read_only=True)
    retry_of = serializers.UUIDField(source="retry_of_id", read_only=True)
    schedule_id = serializers.UUIDField(read_only=True)
    pipeline_run_id = serializers.UUIDField(read_only=True, allow_null=True)
    duration_ms = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Execution
        fields = [
            "id",
            "job_id",
            "command",
            "type",
            "worker_type",
            "env",
            "timeout_seconds",
            "network",
            "memory_limit_mb",
            "pids_limit",
            "cpu_limit",
            "status",
            "exit_code",
            "error",
            "worker_id",
            "attempt",
            "retry_of",
            "trigger",
            "schedule_id",
            "scheduled_for",
            "pipeline_run_id",
            "outputs",
            "created_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "cancel_requested",
            "log_bytes",
            "log_truncated",
        ]
        read_only_fields = fields


class ExecuteInputSerializer(serializers.ModelSerializer):
    """What ``POST /api/v1/execute`` takes: a job and/or a command, and overrides of the
    job's run settings (the job supplies every one left out)."""

    job_id = serializers.PrimaryKeyRelatedField(
        source="job",
        queryset=Job.objects.all(),
        pk_field=serializers.UUIDField(),
        required=False,
        allow_null=True,
    )
    command = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=256 * 1024
    )
    type = serializers.ChoiceField(choices=CommandType.choices, required=False)
    worker_type = serializers.CharField(
        required=False, allow_blank=True, max_length=64, validators=[worker_type_validator]
    )
    env = env_field(required=False)
    timeout_seconds = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_TIMEOUT_SECONDS
    )
    network = serializers.ChoiceField(choices=Network.choices, required=False)

    class Meta:
        model = Execution
        fields = ["job_id", "command", "type", "worker_type", "env", "timeout_seconds"]
        # The resource limits: validated as the model (and the job) declares them.
        fields += ["network", "memory_limit_mb", "pids_limit", "cpu_limit"]


class ExecutionLogEntrySerializer(serializers.ModelSerializer):
    timestamp = serializers.DateTimeField(source="created_at")
    level = serializers.CharField()

    class Meta:
        model = ExecutionLog
        fields = ["seq", "timestamp", "stream", "level", "message"]


class ExecutionLogsSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
    logs = ExecutionLogEntrySerializer(many=True)
    next_offset = serializers.IntegerField()
    complete = serializers.BooleanField()
    truncated = serializers.BooleanField()
    status = serializers.CharField()


class LogQuerySerializer(serializers.Serializer):
    offset = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1, default=0)
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_LOG_PAGE, default=LOG_PAGE
    )
    format = serializers.ChoiceField(choices=["json", "text"], required=False, default="json")


class ManagedWorkerSerializer(serializers.ModelSerializer):
    worker_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = ManagedWorker
        fields = [
            "id",
            "name",
            "type",
            "status",
            "concurrency",
            "labels",
            "provider",
            "pid",
            "host",
            "worker_id",
            "failure_reason",
            "created_at",
            "started_at",
            "stopped_at",
        ]
        read_only_fields = fields


class ManagedWorkerInputSerializer(serializers.Serializer):
    type = serializers.CharField(max_length=64, validators=[worker_type_validator])
    # The most is HODEI_MAX_MANAGED_CONCURRENCY, checked where workers start.
    concurrency = serializers.IntegerField(required=False, min_value=1, max_value=64, default=1)
    labels = labels_field(required=False)


class ManagedWorkerStatusSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    worker_id = serializers.UUIDField(allow_null=True)
    pid = serializers.IntegerField(allow_null=True)
    host = serializers.CharField()
    last_heartbeat = serializers.DateTimeField(allow_null=True)


class WorkerSerializer(serializers.ModelSerializer):
    last_heartbeat = serializers.DateTimeField(source="last_heartbeat_at", read_only=True)

    class Meta:
        model = Worker
        fields = [
            "id",
            "name",
            "type",
            "status",
            "isolation",
            "labels",
            "capacity",
            "hostname",
            "version",
            "pid",
            "registered_at",
            "last_heartbeat",
            "stopped_at",
        ]
        read_only_fields = fields


class WorkerInputSerializer(serializers.ModelSerializer):
    labels = labels_field(required=False)
    name = serializers.CharField(
        required=False, allow_blank=True, max_length=200, validators=[plain_text]
    )

    class Meta:
        model = Worker
        fields = ["name", "type", "labels", "capacity", "hostname", "version", "pid"]
