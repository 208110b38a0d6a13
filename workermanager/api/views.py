from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from hodei.api.views import validated
from workermanager import services
from workermanager.api.filters import ExecutionFilter, ManagedWorkerFilter
from workermanager.api.serializers import (
    ExecuteInputSerializer,
    ExecutionLogsSerializer,
    ExecutionSerializer,
    LogQuerySerializer,
    ManagedWorkerInputSerializer,
    ManagedWorkerSerializer,
    ManagedWorkerStatusSerializer,
)
from workermanager.choices import TERMINAL
from workermanager.models import Execution, ManagedWorker


class ExecutionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Executions: every attempt at running a command, with its log."""

    queryset = Execution.objects.all()
    serializer_class = ExecutionSerializer
    filterset_class = ExecutionFilter
    action_permissions = {"logs": "view", "cancel": "change", "retry": "add"}

    @extend_schema(request=ExecuteInputSerializer, responses={201: ExecutionSerializer})
    def create(self, request):
        """Queue an execution of a job and/or a command."""
        execution = services.execution_enqueue(**validated(ExecuteInputSerializer, request.data))
        return Response(ExecutionSerializer(execution).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[
            OpenApiParameter("offset", int, description="First chunk (sequence number) to return."),
            OpenApiParameter("limit", int, description="Chunks per page (default 1000, max 5000)."),
        ],
        responses=ExecutionLogsSerializer,
    )
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def logs(self, request, pk=None):
        """The execution's output in order, from ``offset``. Tail a running execution by
        calling again with ``next_offset`` until ``complete`` is true."""
        execution = self.get_object()
        query = validated(LogQuerySerializer, request.query_params)
        # Read the status before the chunks: a worker writes its last chunk before it
        # settles the execution, so a terminal status seen here means no chunk is missing.
        is_terminal = execution.status in TERMINAL
        chunks = list(
            execution.logs.filter(seq__gte=query["offset"]).order_by("seq")[: query["limit"]]
        )
        next_offset = chunks[-1].seq + 1 if chunks else query["offset"]
        body = {
            "execution_id": execution.id,
            "logs": chunks,
            "next_offset": next_offset,
            "complete": is_terminal and len(chunks) < query["limit"],
            "truncated": execution.log_truncated,
            "status": execution.status,
        }
        return Response(ExecutionLogsSerializer(body).data)

    @extend_schema(request=None, responses=ExecutionSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel: a queued execution at once, a running one within about a second."""
        execution = services.execution_cancel(execution=self.get_object())
        return Response(ExecutionSerializer(execution).data)

    @extend_schema(request=None, responses={201: ExecutionSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """Run a finished execution again as a new attempt."""
        retry = services.execution_retry(execution=self.get_object())
        return Response(ExecutionSerializer(retry).data, status=status.HTTP_201_CREATED)


class ManagedWorkerViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Worker agents that Hodei starts and stops itself (local processes by default)."""

    queryset = ManagedWorker.objects.select_related("worker")
    serializer_class = ManagedWorkerSerializer
    filterset_class = ManagedWorkerFilter
    action_permissions = {"worker_status": "view", "destroy": "change"}

    def get_object(self):
        return services.managed_worker_refresh(managed=super().get_object())

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        for managed in page:
            services.managed_worker_refresh(managed=managed)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        request=ManagedWorkerInputSerializer,
        responses={201: ManagedWorkerSerializer, 503: ManagedWorkerSerializer},
    )
    def create(self, request):
        """Start an agent and wait until it has registered (a few seconds at most)."""
        data = validated(ManagedWorkerInputSerializer, request.data)
        try:
            managed = services.managed_worker_start(**data)
        except services.WorkerStartFailed as exc:
            body = {
                **ManagedWorkerSerializer(exc.managed).data,
                "error": exc.code,
                "detail": exc.message,
            }
            return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(ManagedWorkerSerializer(managed).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=ManagedWorkerSerializer)
    def destroy(self, request, pk=None):
        """Stop the agent gracefully; stopping a stopped worker is harmless."""
        managed = services.managed_worker_stop(managed=self.get_object())
        return Response(ManagedWorkerSerializer(managed).data)

    @extend_schema(responses=ManagedWorkerStatusSerializer)
    @action(detail=True, methods=["get"], url_path="status")
    def worker_status(self, request, pk=None):
        managed = self.get_object()
        body = {
            "id": managed.id,
            "status": managed.status,
            "worker_id": managed.worker_id,
            "pid": managed.pid,
            "host": managed.host,
            "last_heartbeat": managed.worker.last_heartbeat_at if managed.worker else None,
        }
        return Response(ManagedWorkerStatusSerializer(body).data)
