from django_filters import rest_framework as filters

from pipelines.choices import RunStatus, RunTrigger
from pipelines.models import PipelineRun


class PipelineRunFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=RunStatus.choices)
    pipeline_id = filters.UUIDFilter(field_name="pipeline_id")
    trigger = filters.ChoiceFilter(choices=RunTrigger.choices)
    schedule_id = filters.UUIDFilter(field_name="schedule_id")

    class Meta:
        model = PipelineRun
        fields = ["status", "pipeline_id", "trigger", "schedule_id"]
