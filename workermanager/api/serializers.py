from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from hodei.api.fields import (
    ENV_NAME,
    CachedFieldsMixin,
    StringMapField,
    env_field,
    id_field,
    labels_field,
)
from hodei.lib.validators import plain_text
from orchestrator.choices import CommandType, Network
from orchestrator.models import MAX_TIMEOUT_SECONDS, Job, worker_type_validator
from workermanager import waiting
from workermanager.choices import RUN_OUTCOME_CHOICES, Isolation, LogStream
from workermanager.models import (
    Execution,
    ExecutionLog,
    ManagedWorker,
    PoolScaling,
    Worker,
    WorkerPool,
)
from workermanager.providers import PROVIDERS
from workermanager.selectors import LOG_PAGE, MAX_LOG_PAGE


class WaitingReasonSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=waiting.Reason.ALL)
    message = serializers.CharField()
    since = serializers.DateTimeField()


class ExecutionSerializer(CachedFieldsMixin, serializers.ModelSerializer):
    job_id = serializers.UUIDField(read_only=True)
    worker_id = serializers.UUIDField(read_only=True)
    retry_of = serializers.UUIDField(source="retry_of_id", read_only=True)
    schedule_id = serializers.UUIDField(read_only=True)
    pipeline_run_id = serializers.UUIDField(read_only=True, allow_null=True)
    duration_ms = serializers.IntegerField(read_only=True, allow_null=True)
    waiting_reason = serializers.SerializerMethodField()

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
            "priority",
            "waiting_reason",
        ]
        read_only_fields = fields

    @extend_schema_field(WaitingReasonSerializer(allow_null=True))
    def get_waiting_reason(self, execution: Execution) -> dict | None:
        """Why a queued or pending execution waits (null otherwise). On the execution's
        own page only: a list leaves it null, to stay one query."""
        if not self.context.get("with_waiting_reason"):
            return None
        reason = waiting.waiting_reason(execution)
        return reason.as_dict() if reason else None


class ExecuteInputSerializer(CachedFieldsMixin, serializers.ModelSerializer):
    """What ``POST /api/v1/execute`` takes: a job and/or a command, and overrides of the
    job's run settings (the job supplies every one left out)."""

    job_id = id_field(Job.objects.all(), source="job", required=False, allow_null=True)
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
    priority = serializers.IntegerField(
        required=False, min_value=-100, max_value=100, help_text="Overrides the job's."
    )

    class Meta:
        model = Execution
        fields = ["job_id", "command", "type", "worker_type", "priority", "env", "timeout_seconds"]
        # The resource limits: validated as the model (and the job) declares them.
        fields += ["network", "memory_limit_mb", "pids_limit", "cpu_limit"]
        # None of these fields is unique, alone or together: without this, DRF reads the
        # model's constraints for every request to find that out.
        validators = []


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
    pool_id = serializers.UUIDField(read_only=True, allow_null=True)

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
            "pool_id",
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
    provider = serializers.ChoiceField(
        choices=PROVIDERS,
        required=False,
        default="local",
        help_text="local: a process of the worker manager's host; kubernetes: a pod "
        "(docs/kubernetes.md).",
    )


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


# -- the agent protocol (/api/v1/agent/) -------------------------------------------------


class AgentRegisterInputSerializer(serializers.Serializer):
    type = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        validators=[worker_type_validator],
        help_text="Its worker type; may be left out when the registration token (or the "
        "credential's worker) has one.",
    )
    name = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        validators=[plain_text],
        help_text="Stable name: registering again under it rotates the credential.",
    )
    labels = labels_field(required=False)
    capacity = serializers.IntegerField(required=False, min_value=1, max_value=1024, default=1)
    isolation = serializers.ChoiceField(choices=Isolation.choices, required=False)
    hostname = serializers.CharField(required=False, allow_blank=True, max_length=255)
    version = serializers.CharField(required=False, allow_blank=True, max_length=64)
    pid = serializers.IntegerField(required=False, allow_null=True, min_value=0)


class AgentRegistrationSerializer(serializers.Serializer):
    worker_id = serializers.UUIDField()
    name = serializers.CharField()
    type = serializers.CharField()
    credential = serializers.CharField(
        required=False,
        help_text="The worker credential, shown this once: only when registering with a "
        "registration token.",
    )
    heartbeat_seconds = serializers.FloatField(
        help_text="The interval the control plane expects heartbeats at."
    )


class AgentRunningSerializer(serializers.Serializer):
    running = serializers.ListField(
        child=serializers.UUIDField(format="hex_verbose"),
        required=False,
        max_length=1024,
        default=list,
        help_text="The executions the agent runs now.",
    )


class AgentControlSerializer(serializers.Serializer):
    control = serializers.DictField(
        child=serializers.ChoiceField(choices=["cancel", "stop"]),
        help_text='Execution id -> "cancel" (an operator cancelled it) or "stop" (no longer '
        "this worker's: declared lost, or settled elsewhere). Kill those.",
    )


class AgentHeartbeatSerializer(AgentControlSerializer):
    draining = serializers.BooleanField(help_text="Finish what you run; claim nothing new.")


class AgentClaimInputSerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        min_value=1, max_value=1024, help_text="Free slots: at most this many executions."
    )
    wait_seconds = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=30,
        default=30,
        help_text="Wait up to this long for work (a long-poll); 0 answers at once.",
    )


class AgentAssignmentSerializer(serializers.Serializer):
    """Everything an agent needs to run one execution. Secret values appear here, to the
    worker that runs it, and nowhere else in any API."""

    id = serializers.UUIDField()
    command = serializers.CharField()
    type = serializers.ChoiceField(choices=CommandType.choices)
    env = serializers.DictField(child=serializers.CharField())
    secret_env = serializers.DictField(child=serializers.CharField())
    timeout_seconds = serializers.IntegerField(allow_null=True)
    attempt = serializers.IntegerField()
    job_id = serializers.CharField(help_text='The job\'s id, or "" for an ad-hoc command.')
    trace_parent = serializers.CharField()
    network = serializers.BooleanField(help_text="false: no network for the command.")
    memory_limit_mb = serializers.IntegerField(allow_null=True)
    pids_limit = serializers.IntegerField(allow_null=True)
    cpu_limit = serializers.FloatField(allow_null=True)


class AgentClaimSerializer(serializers.Serializer):
    executions = AgentAssignmentSerializer(many=True)


class AgentLogChunkSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
    seq = serializers.IntegerField(min_value=0, max_value=2**31 - 1)
    stream = serializers.ChoiceField(choices=LogStream.choices)
    message = serializers.CharField(allow_blank=True, trim_whitespace=False)
    created_at = serializers.FloatField(help_text="Unix time, in seconds.")


class AgentLogsInputSerializer(serializers.Serializer):
    chunks = AgentLogChunkSerializer(many=True, max_length=10_000)


class AgentLogsSerializer(serializers.Serializer):
    stored_bytes = serializers.IntegerField(
        help_text="Bytes of output handed over (chunks stored before are skipped)."
    )


class AgentFinishInputSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=RUN_OUTCOME_CHOICES)
    exit_code = serializers.IntegerField(required=False, allow_null=True, default=None)
    error = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=10_000, trim_whitespace=False
    )
    log_bytes = serializers.IntegerField(required=False, min_value=0, default=0)
    log_truncated = serializers.BooleanField(required=False, default=False)
    outputs = StringMapField(
        key_pattern=ENV_NAME, max_value_length=64 * 1024, required=False, default=dict
    )


class AgentFinishSerializer(serializers.Serializer):
    result = serializers.ChoiceField(
        choices=["recorded", "ignored"],
        help_text="ignored: it had been settled meanwhile (declared lost, say); a finish "
        "sent again is ignored too.",
    )
    status = serializers.CharField(help_text="The execution's status now.")


MAX_FINISH_REPORTS = 100


class AgentFinishReportSerializer(AgentFinishInputSerializer):
    execution_id = serializers.UUIDField()


class AgentFinishManyInputSerializer(serializers.Serializer):
    reports = AgentFinishReportSerializer(
        many=True, allow_empty=False, max_length=MAX_FINISH_REPORTS
    )
    chunks = AgentLogChunkSerializer(
        many=True,
        required=False,
        default=list,
        max_length=10_000,
        help_text="Output chunks to store first, as POST logs would (their last output): "
        "stored before the reports are recorded.",
    )
    claim = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=1024,
        default=0,
        help_text="Also claim up to this many queued executions (the slots these runs "
        "free), answered in executions at once, without waiting: the next claim in the "
        "same round trip.",
    )


class AgentFinishResultSerializer(AgentFinishSerializer):
    execution_id = serializers.UUIDField()


class AgentFinishManySerializer(serializers.Serializer):
    results = AgentFinishResultSerializer(many=True, help_text="In the order of the reports.")
    executions = AgentAssignmentSerializer(
        many=True, required=False, help_text="What was claimed, when claim was asked."
    )


class WorkerPoolSerializer(serializers.ModelSerializer):
    current_workers = serializers.IntegerField(
        read_only=True, help_text="Its agents starting or running (not draining)."
    )
    draining_workers = serializers.IntegerField(
        read_only=True, help_text="Its agents drained by a scale-down, finishing their commands."
    )

    class Meta:
        model = WorkerPool
        fields = [
            "id",
            "worker_type",
            "provider",
            "min_workers",
            "max_workers",
            "concurrency",
            "labels",
            "scale_up_after_seconds",
            "idle_seconds",
            "status",
            "desired_workers",
            "current_workers",
            "draining_workers",
            "created_at",
            "updated_at",
            "reconciled_at",
        ]
        read_only_fields = fields


class WorkerPoolInputSerializer(serializers.Serializer):
    """The bounds between fields (min within max) and the quotas are checked by the model
    (WorkerPool.clean), for the admin too."""

    worker_type = serializers.CharField(max_length=64, validators=[worker_type_validator])
    provider = serializers.ChoiceField(choices=PROVIDERS, required=False)
    min_workers = serializers.IntegerField(required=False, min_value=0, max_value=1000)
    max_workers = serializers.IntegerField(min_value=1, max_value=1000)
    concurrency = serializers.IntegerField(required=False, min_value=1, max_value=64)
    labels = labels_field(required=False)
    scale_up_after_seconds = serializers.IntegerField(required=False, min_value=0, max_value=86400)
    idle_seconds = serializers.IntegerField(required=False, min_value=1, max_value=86400)


class PoolScalingSerializer(serializers.ModelSerializer):
    pool_id = serializers.UUIDField(read_only=True)
    from_workers = serializers.IntegerField(read_only=True, help_text="Live agents before.")
    to_workers = serializers.IntegerField(read_only=True, help_text="Live agents after.")

    class Meta:
        model = PoolScaling
        fields = ["id", "pool_id", "at", "from_workers", "to_workers", "reason", "detail"]
        read_only_fields = fields
