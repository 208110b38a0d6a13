from django_filters import rest_framework as filters

from orchestrator.choices import CommandType
from workermanager.choices import (
    ExecutionStatus,
    ManagedWorkerStatus,
    PoolStatus,
    Trigger,
    WorkerStatus,
)
from workermanager.models import Execution, ManagedWorker, Worker, WorkerPool


class ExecutionFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=ExecutionStatus.choices)
    job_id = filters.UUIDFilter(field_name="job_id")
    pipeline_id = filters.UUIDFilter(field_name="job__pipeline_id")
    worker_id = filters.UUIDFilter(field_name="worker_id")
    schedule_id = filters.UUIDFilter(field_name="schedule_id")
    pipeline_run_id = filters.UUIDFilter(field_name="pipeline_run_id")
    type = filters.ChoiceFilter(choices=CommandType.choices)
    worker_type = filters.CharFilter(max_length=64)
    trigger = filters.ChoiceFilter(choices=Trigger.choices)

    class Meta:
        model = Execution
        fields = [
            "status",
            "job_id",
            "pipeline_id",
            "worker_id",
            "schedule_id",
            "pipeline_run_id",
            "type",
            "worker_type",
            "trigger",
        ]


class ManagedWorkerFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=ManagedWorkerStatus.choices)
    type = filters.CharFilter(max_length=64)
    pool_id = filters.UUIDFilter(field_name="pool_id")

    class Meta:
        model = ManagedWorker
        fields = ["status", "type", "pool_id"]


class WorkerPoolFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=PoolStatus.choices)
    worker_type = filters.CharFilter(max_length=64)

    class Meta:
        model = WorkerPool
        fields = ["status", "worker_type"]


class WorkerFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=WorkerStatus.choices)
    type = filters.CharFilter(max_length=64)

    class Meta:
        model = Worker
        fields = ["status", "type"]
