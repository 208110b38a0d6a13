from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from hodei.api.fields import JSONObjectField, env_field, id_field, labels_field
from hodei.lib import secrets
from orchestrator.models import JOB_SETTINGS, PIPELINE_SETTINGS, Job, Pipeline


class PipelineSerializer(serializers.ModelSerializer):
    metadata = JSONObjectField(required=False)

    class Meta:
        model = Pipeline
        fields = ["id", *PIPELINE_SETTINGS, "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class PipelineInputSerializer(PipelineSerializer):
    class Meta(PipelineSerializer.Meta):
        fields = list(PIPELINE_SETTINGS)


class JobSerializer(serializers.ModelSerializer):
    pipeline_id = serializers.UUIDField(read_only=True)
    depends_on = serializers.SerializerMethodField()
    secret_env = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "pipeline_id",
            *JOB_SETTINGS,
            "depends_on",
            "status",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_depends_on(self, job: Job) -> list[str]:
        # Uses the prefetch cache when the view prefetched `depends_on`.
        return [str(other.pk) for other in job.depends_on.all()]

    @extend_schema_field(serializers.DictField(child=serializers.CharField()))
    def get_secret_env(self, job: Job) -> dict[str, str]:
        return {key: secrets.MASK for key in job.secret_env}


class JobInputSerializer(serializers.ModelSerializer):
    pipeline_id = id_field(Pipeline.objects.all(), source="pipeline")
    labels = labels_field(required=False)
    env = env_field(required=False)
    secret_env = env_field(required=False)
    depends_on = id_field(Job.objects.all(), many=True, required=False)

    class Meta:
        model = Job
        fields = ["pipeline_id", *JOB_SETTINGS, "depends_on"]


class JobStatusSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
