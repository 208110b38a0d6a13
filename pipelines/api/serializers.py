from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from hodei.api.fields import env_field, id_field
from orchestrator.models import Job
from pipelines.models import PipelineRun
from pipelines.services import run_jobs


class RunJobSerializer(serializers.Serializer):
    """One job of a run: its state and latest attempt."""

    job_id = serializers.UUIDField()
    name = serializers.CharField()
    needs = serializers.ListField(child=serializers.UUIDField())
    allow_failure = serializers.BooleanField()
    state = serializers.CharField()
    execution_id = serializers.UUIDField(source="execution.id", allow_null=True, default=None)
    attempt = serializers.IntegerField(source="execution.attempt", allow_null=True, default=None)
    status = serializers.CharField(source="execution.status", allow_null=True, default=None)
    error = serializers.CharField(source="execution.error", allow_null=True, default=None)
    outputs = serializers.DictField(
        source="execution.outputs", child=serializers.CharField(), default=dict
    )
    started_at = serializers.DateTimeField(
        source="execution.started_at", allow_null=True, default=None
    )
    finished_at = serializers.DateTimeField(
        source="execution.finished_at", allow_null=True, default=None
    )


class PipelineRunSerializer(serializers.ModelSerializer):
    pipeline_id = serializers.UUIDField(read_only=True)
    schedule_id = serializers.UUIDField(read_only=True, allow_null=True)
    duration_ms = serializers.IntegerField(read_only=True, allow_null=True)
    jobs = serializers.SerializerMethodField()

    class Meta:
        model = PipelineRun
        fields = [
            "id",
            "pipeline_id",
            "status",
            "trigger",
            "env",
            "schedule_id",
            "scheduled_for",
            "cancel_requested",
            "created_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "trace_id",
            "jobs",
        ]
        read_only_fields = fields

    @extend_schema_field(RunJobSerializer(many=True))
    def get_jobs(self, run: PipelineRun) -> list[dict]:
        if not self.context.get("with_jobs", True):
            return []
        return RunJobSerializer(run_jobs(run), many=True).data


class RunInputSerializer(serializers.Serializer):
    """What ``POST /api/v1/pipelines/{id}/run`` takes, both optional."""

    env = env_field(required=False, help_text="Variables every job of the run receives.")
    jobs = id_field(
        Job.objects.all(),
        many=True,
        required=False,
        help_text="Run only these jobs (and the jobs they need).",
    )
