from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.settings import api_settings

from accounts import permissions
from hodei.api.renderers import PlainTextRenderer
from hodei.api.views import validated
from hodei.lib import clock
from workermanager import managed, selectors, services, workers
from workermanager.api.filters import ExecutionFilter, ManagedWorkerFilter, WorkerFilter
from workermanager.api.serializers import (
    ExecuteInputSerializer,
    ExecutionLogsSerializer,
    ExecutionSerializer,
    LogQuerySerializer,
    ManagedWorkerInputSerializer,
    ManagedWorkerSerializer,
    ManagedWorkerStatusSerializer,
    WorkerInputSerializer,
    WorkerSerializer,
)
from workermanager.models import Execution, ManagedWorker, Worker


@extend_schema(tags=["executions"])
class ExecutionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Executions: every attempt at running a command, with its log."""

    queryset = Execution.objects.all()
    serializer_class = ExecutionSerializer
    filterset_class = ExecutionFilter
    action_permissions = {
        "create": permissions.RUN,
        "logs": "workermanager.view_executionlog",
        "cancel": "change",
        "retry": permissions.RUN,
    }

    @extend_schema(request=ExecuteInputSerializer, responses={201: ExecutionSerializer})
    def create(self, request):
        """Queue an execution of a job and/or a command. Needs the run permission; a
        command of your own (ad hoc, or overriding the job's) needs run_command too, and
        gets the job's secret variables only if you may change the job."""
        data = validated(ExecuteInputSerializer, request.data)
        job = data.get("job")
        own_command = "command" in data and (job is None or data["command"] != job.command)
        permissions.require_run(request.user, own_command=own_command)
        execution = services.execution_enqueue(
            **data, with_secrets=permissions.secrets_for_own_command(request.user)
        )
        return Response(ExecutionSerializer(execution).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[
            OpenApiParameter("offset", int, description="First chunk (sequence number) to return."),
            OpenApiParameter("limit", int, description="Chunks per page (default 1000, max 5000)."),
            OpenApiParameter(
                "format",
                str,
                enum=["json", "text"],
                description="`text`: the whole log stored so far as text/plain (a download).",
            ),
        ],
        responses={
            200: OpenApiResponse(
                ExecutionLogsSerializer, description="JSON; text/plain with format=text."
            )
        },
    )
    @action(
        detail=True,
        methods=["get"],
        pagination_class=None,
        filter_backends=[],
        renderer_classes=[*api_settings.DEFAULT_RENDERER_CLASSES, PlainTextRenderer],
    )
    def logs(self, request, pk=None):
        """The execution's output in order, from ``offset``. Tail a running execution by
        calling again with ``next_offset`` until ``complete`` is true."""
        execution = self.get_object()
        query = validated(LogQuerySerializer, request.query_params, strict=False)
        if query["format"] == "text":
            return _log_download(execution)
        page = selectors.execution_log_page(execution, offset=query["offset"], limit=query["limit"])
        body = {
            "execution_id": execution.id,
            "logs": page.chunks,
            "next_offset": page.next_offset,
            "complete": page.complete,
            "truncated": page.truncated,
            "status": page.status,
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
        """Run a finished execution again as a new attempt (the run permission)."""
        execution = self.get_object()
        permissions.require_run(request.user, own_command=execution.own_command)
        retry = services.execution_retry(execution=execution)
        return Response(ExecutionSerializer(retry).data, status=status.HTTP_201_CREATED)


def _log_download(execution: Execution) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        (chunk.message for chunk in selectors.execution_log_pages(execution)),
        content_type="text/plain; charset=utf-8",
    )
    response["Content-Disposition"] = f'inline; filename="execution-{execution.id}.log"'
    return response


@extend_schema(tags=["managed workers"])
class ManagedWorkerViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Worker agents that Hodei starts and stops itself (local processes by default).
    Their state is reconciled with their processes by the maintenance task, every
    minute: reading them never probes or changes anything."""

    queryset = ManagedWorker.objects.select_related("worker")
    serializer_class = ManagedWorkerSerializer
    filterset_class = ManagedWorkerFilter
    action_permissions = {"worker_status": "view", "destroy": "change"}

    @extend_schema(
        request=ManagedWorkerInputSerializer,
        responses={201: ManagedWorkerSerializer, 503: ManagedWorkerSerializer},
    )
    def create(self, request):
        """Start an agent and wait until it has registered (a few seconds at most)."""
        data = validated(ManagedWorkerInputSerializer, request.data, echo=ManagedWorkerSerializer)
        try:
            started = managed.managed_worker_start(**data)
        except managed.WorkerStartFailed as exc:
            body = {
                **ManagedWorkerSerializer(exc.managed).data,
                "error": exc.code,
                "detail": exc.message,
            }
            return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(ManagedWorkerSerializer(started).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=ManagedWorkerSerializer)
    def destroy(self, request, pk=None):
        """Stop the agent gracefully; stopping a stopped worker is harmless."""
        stopped = managed.managed_worker_stop(managed=self.get_object())
        return Response(ManagedWorkerSerializer(stopped).data)

    @extend_schema(responses=ManagedWorkerStatusSerializer)
    @action(detail=True, methods=["get"], url_path="status")
    def worker_status(self, request, pk=None):
        row = self.get_object()
        body = {
            "id": row.id,
            "status": row.status,
            "worker_id": row.worker_id,
            "pid": row.pid,
            "host": row.host,
            "last_heartbeat": row.worker.last_heartbeat_at if row.worker else None,
        }
        return Response(ManagedWorkerStatusSerializer(body).data)


@extend_schema(tags=["workers"])
class WorkerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The registry of every agent that can run work (served on the scheduler's port)."""

    queryset = Worker.objects.all()
    serializer_class = WorkerSerializer
    filterset_class = WorkerFilter
    action_permissions = {"heartbeat": "change", "drain": "change", "undrain": "change"}

    @extend_schema(
        request=WorkerInputSerializer,
        responses={201: WorkerSerializer, 200: WorkerSerializer},
        description="Register a worker. Registering a name that exists re-registers that "
        "worker (200) instead of creating a new one (201).",
    )
    def create(self, request):
        worker, created = workers.worker_register(
            **validated(WorkerInputSerializer, request.data, echo=WorkerSerializer)
        )
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(WorkerSerializer(worker).data, status=code)

    @extend_schema(request=None, responses=WorkerSerializer)
    @action(detail=True, methods=["post"])
    def heartbeat(self, request, pk=None):
        worker = self.get_object()
        worker.heartbeat(now=clock.now())
        return Response(WorkerSerializer(worker).data)

    @extend_schema(request=None, responses=WorkerSerializer)
    @action(detail=True, methods=["post"])
    def drain(self, request, pk=None):
        """Stop giving it new work; it finishes what it runs. 409 unless it is online."""
        worker = self.get_object()
        worker.drain()
        return Response(WorkerSerializer(worker).data)

    @extend_schema(request=None, responses=WorkerSerializer)
    @action(detail=True, methods=["post"])
    def undrain(self, request, pk=None):
        """Give a draining worker new work again. 409 unless it is draining."""
        worker = self.get_object()
        worker.undrain()
        return Response(WorkerSerializer(worker).data)
