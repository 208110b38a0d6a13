from django_filters import rest_framework as filters

from scheduler.choices import ScheduleStatus, WorkerStatus
from scheduler.models import Schedule, Worker


class ScheduleFilter(filters.FilterSet):
    job_id = filters.UUIDFilter(field_name="job_id")
    status = filters.ChoiceFilter(choices=ScheduleStatus.choices)
    enabled = filters.BooleanFilter()

    class Meta:
        model = Schedule
        fields = ["job_id", "status", "enabled"]


class WorkerFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=WorkerStatus.choices)
    type = filters.CharFilter(max_length=64)

    class Meta:
        model = Worker
        fields = ["status", "type"]
