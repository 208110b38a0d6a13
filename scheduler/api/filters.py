from django_filters import rest_framework as filters

from scheduler.choices import ScheduleHealth, ScheduleStatus
from scheduler.models import Schedule


class ScheduleFilter(filters.FilterSet):
    job_id = filters.UUIDFilter(field_name="job_id")
    pipeline_id = filters.UUIDFilter(field_name="pipeline_id")
    status = filters.ChoiceFilter(choices=ScheduleStatus.choices)
    health = filters.ChoiceFilter(choices=ScheduleHealth.choices)
    enabled = filters.BooleanFilter(method="filter_enabled")

    class Meta:
        model = Schedule
        fields = ["job_id", "pipeline_id", "status", "health", "enabled"]

    def filter_enabled(self, queryset, name, value):
        paused = queryset.filter(status=ScheduleStatus.PAUSED)
        return queryset.exclude(pk__in=paused) if value else paused
