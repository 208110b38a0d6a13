from django_filters import rest_framework as filters

from orchestrator.choices import CommandType, JobStatus, PipelineStatus
from orchestrator.models import Job, Pipeline


class PipelineFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=PipelineStatus.choices)

    class Meta:
        model = Pipeline
        fields = ["status"]


class JobFilter(filters.FilterSet):
    pipeline_id = filters.UUIDFilter(field_name="pipeline_id")
    status = filters.ChoiceFilter(choices=JobStatus.choices)
    type = filters.ChoiceFilter(choices=CommandType.choices)
    worker_type = filters.CharFilter(max_length=64)

    class Meta:
        model = Job
        fields = ["pipeline_id", "status", "type", "worker_type"]
