from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from hodei.api.views import validated
from workermanager import services
from workermanager.api.filters import ExecutionFilter
from workermanager.api.serializers import (
    ExecuteInputSerializer,
    ExecutionLogsSerializer,
    ExecutionSerializer,
    LogQuerySerializer,
)
from workermanager.choices import TERMINAL
from workermanager.models import Execution


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
