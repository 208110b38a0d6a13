import itertools
import select

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.settings import api_settings

from accounts import permissions
from hodei.api.renderers import PlainTextRenderer
from hodei.api.views import validated
from hodei.lib import clock
from workermanager import agent_protocol, credentials, managed, pools, selectors, services, workers
from workermanager.api.authentication import (
    Agent,
    AgentRegistrationAuthentication,
    WorkerCredentialAuthentication,
)
from workermanager.api.filters import (
    ExecutionFilter,
    ManagedWorkerFilter,
    WorkerFilter,
    WorkerPoolFilter,
)
from workermanager.api.serializers import (
    AgentClaimInputSerializer,
    AgentClaimSerializer,
    AgentControlSerializer,
    AgentFinishInputSerializer,
    AgentFinishManyInputSerializer,
    AgentFinishManySerializer,
    AgentFinishSerializer,
    AgentHeartbeatSerializer,
    AgentLogsInputSerializer,
    AgentLogsSerializer,
    AgentRegisterInputSerializer,
    AgentRegistrationSerializer,
    AgentRunningSerializer,
    ExecuteInputSerializer,
    ExecutionLogsSerializer,
    ExecutionSerializer,
    LogQuerySerializer,
    ManagedWorkerInputSerializer,
    ManagedWorkerSerializer,
    ManagedWorkerStatusSerializer,
    PoolScalingSerializer,
    WorkerInputSerializer,
    WorkerPoolInputSerializer,
    WorkerPoolSerializer,
    WorkerSerializer,
)
from workermanager.models import (
    Execution,
    ManagedWorker,
    PoolScaling,
    RegistrationToken,
    Worker,
    WorkerCredential,
)


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

    def get_serializer_context(self):
        # One execution's page explains why it waits; a list stays one query.
        return {
            **super().get_serializer_context(),
            "with_waiting_reason": self.action == "retrieve",
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


@extend_schema(tags=["pools"])
class PoolViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Worker pools: managed workers of one type that Hodei starts when executions of the
    type queue up and stops when they are idle, between `min_workers` and `max_workers`.
    Reconciled every few seconds by each qcluster; every decision is in `scalings`."""

    queryset = selectors.pools_with_worker_counts()
    serializer_class = WorkerPoolSerializer
    filterset_class = WorkerPoolFilter
    action_permissions = {"scalings": "workermanager.view_poolscaling"}

    def _body(self, pool) -> dict:
        return WorkerPoolSerializer(selectors.pools_with_worker_counts().get(pk=pool.pk)).data

    @extend_schema(request=WorkerPoolInputSerializer, responses={201: WorkerPoolSerializer})
    def create(self, request):
        """A pool; its first agents start within HODEI_POOL_RECONCILE_SECONDS (`min_workers`
        of them, or as many as its queue asks). 400 naming the fields for bad bounds
        (`min_workers` above `max_workers`, a quota) or a worker type that has a pool."""
        data = validated(WorkerPoolInputSerializer, request.data, echo=WorkerPoolSerializer)
        pool = pools.pool_create(**data)
        return Response(self._body(pool), status=status.HTTP_201_CREATED)

    @extend_schema(request=WorkerPoolInputSerializer, responses=WorkerPoolSerializer)
    def update(self, request, pk=None):
        return self._update(request, partial=False)

    @extend_schema(request=WorkerPoolInputSerializer, responses=WorkerPoolSerializer)
    def partial_update(self, request, pk=None):
        """Change the bounds or settings; its agents follow at the next pass (a lower
        `max_workers` drains the extra ones). The worker type cannot change."""
        return self._update(request, partial=True)

    def _update(self, request, *, partial: bool):
        data = validated(
            WorkerPoolInputSerializer, request.data, partial=partial, echo=WorkerPoolSerializer
        )
        pool = pools.pool_update(pool=self.get_object(), **data)
        return Response(self._body(pool))

    @extend_schema(
        responses={
            202: OpenApiResponse(WorkerPoolSerializer, description="Its agents are draining."),
            204: OpenApiResponse(description="Deleted (it had no live agent)."),
        }
    )
    def destroy(self, request, pk=None):
        """Delete the pool. Its agents drain first (their commands finish), then stop:
        202 with the pool, `status: deleting`, until the last one has stopped and the
        pool is gone; 204 when it had none."""
        pool = pools.pool_delete(pool=self.get_object())
        if pool is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(self._body(pool), status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        responses=PoolScalingSerializer(many=True),
        operation_id="api_v1_pools_scalings_list",
    )
    @action(detail=True, methods=["get"], filterset_class=None)
    def scalings(self, request, pk=None):
        """The pool's scaling decisions, newest first: when, from how many live agents
        to how many, why (`min`, `queue`, `wait`, `replace`, `idle`, `max`, `deleted`)
        and the numbers behind it."""
        pool = self.get_object()
        page = self.paginate_queryset(PoolScaling.objects.filter(pool=pool))
        return self.get_paginated_response(PoolScalingSerializer(page, many=True).data)


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


def _client_gone(request) -> bool:
    """Whether the agent hung up on its long-poll (it stopped, or restarted): work claimed
    now would go to nobody. Under gunicorn the connection's socket is in the WSGI
    environ; a client waiting for its answer sends nothing, so anything readable on it
    (end of file, a TLS close) means it has left. (Behind a proxy: nginx closes the
    connection to us when its client leaves.)"""
    sock = request.META.get("gunicorn.socket")
    if sock is None:
        return False
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


class IsAgent(BasePermission):
    """An agent, authenticated with its worker credential (``register``: or with a
    registration token). Nothing else is let in, whatever its user permissions."""

    def has_permission(self, request, view):
        if view.action == "register":
            return isinstance(request.user, Agent)
        return isinstance(request.auth, WorkerCredential)


@extend_schema(tags=["agent"])
class AgentViewSet(viewsets.ViewSet):
    """What HTTP agents ask of the control plane. Each endpoint calls the function of
    ``workermanager.agent_protocol`` that a database agent calls in its own process: one
    owner, two transports. Authenticated with the worker credential only (a user's API
    token is refused here), and only for the worker's own executions (403 otherwise)."""

    authentication_classes = [WorkerCredentialAuthentication]
    permission_classes = [IsAgent]

    @extend_schema(
        request=AgentRegisterInputSerializer,
        responses={201: AgentRegistrationSerializer, 200: AgentRegistrationSerializer},
    )
    @action(
        detail=False,
        methods=["post"],
        authentication_classes=[AgentRegistrationAuthentication],
    )
    def register(self, request):
        """Register an agent as a worker. With a registration token: 201 and a new
        worker credential (shown once; registering again under the same name replaces
        it). With the worker's credential (a managed worker, or an agent that kept it):
        200, and it keeps that credential. 401 for a token that is unknown, revoked,
        expired or used up."""
        data = validated(AgentRegisterInputSerializer, request.data)
        auth = request.auth
        worker, credential = agent_protocol.agent_register(
            registration_token=auth if isinstance(auth, RegistrationToken) else None,
            credential=auth if isinstance(auth, WorkerCredential) else None,
            **data,
        )
        body = {
            "worker_id": worker.id,
            "name": worker.name,
            "type": worker.type,
            "heartbeat_seconds": settings.HODEI_HEARTBEAT_SECONDS,
        }
        if credential:
            body["credential"] = credential
        code = status.HTTP_201_CREATED if credential else status.HTTP_200_OK
        return Response(AgentRegistrationSerializer(body).data, status=code)

    @extend_schema(request=AgentRunningSerializer, responses=AgentHeartbeatSerializer)
    @action(detail=False, methods=["post"])
    def heartbeat(self, request):
        """I am alive, running these. Answers whether to drain and which of them to kill
        (cancelled, or no longer this worker's)."""
        running = validated(AgentRunningSerializer, request.data)["running"]
        reply = agent_protocol.agent_heartbeat(
            worker=request.user.worker, running=[str(i) for i in running]
        )
        return Response(AgentHeartbeatSerializer(reply).data)

    @extend_schema(request=AgentRunningSerializer, responses=AgentControlSerializer)
    @action(detail=False, methods=["post"])
    def control(self, request):
        """Which of the executions I run to kill: read only, asked every half second
        while commands run (a cancel is seen within a second)."""
        running = validated(AgentRunningSerializer, request.data)["running"]
        verdicts = agent_protocol.agent_control(
            worker=request.user.worker, running=[str(i) for i in running]
        )
        return Response(AgentControlSerializer({"control": verdicts}).data)

    @extend_schema(request=AgentClaimInputSerializer, responses=AgentClaimSerializer)
    @action(detail=False, methods=["post"])
    def claim(self, request):
        """Claim up to ``limit`` queued executions of this worker's type (or of none),
        oldest first. With none queued it waits up to ``wait_seconds`` (30 at most) and
        answers as soon as one is (a long-poll), or with an empty list. Nothing for a
        draining or offline worker. The only place secret values are sent."""
        data = validated(AgentClaimInputSerializer, request.data)
        credential, worker = request.auth, request.user.worker

        asked = itertools.count()

        def still_allowed() -> bool:
            # Before the first claim, the authentication has just checked the credential
            # (and read the worker): asked again only before the claims after a wait.
            if _client_gone(request):
                return False
            return next(asked) == 0 or credentials.worker_credential_may_claim(
                credential, registered_at=worker.registered_at
            )

        executions = agent_protocol.agent_claim_wait(
            worker=worker,
            limit=data["limit"],
            wait_seconds=data["wait_seconds"],
            still_allowed=still_allowed,
        )
        return Response(AgentClaimSerializer({"executions": executions}).data)

    @extend_schema(request=AgentLogsInputSerializer, responses=AgentLogsSerializer)
    @action(detail=False, methods=["post"])
    def logs(self, request):
        """Store output chunks of this worker's executions. Idempotent: a chunk already
        stored (same execution and ``seq``) is skipped, so a batch sent again after a
        network error never duplicates or reorders a line. 403 if any chunk is of
        another worker's execution (then none is stored)."""
        chunks = validated(AgentLogsInputSerializer, request.data)["chunks"]
        stored = agent_protocol.agent_store_logs(
            worker=request.user.worker, chunks=_log_chunks(chunks)
        )
        return Response(AgentLogsSerializer({"stored_bytes": stored}).data)

    @extend_schema(
        request=AgentFinishInputSerializer,
        responses=AgentFinishSerializer,
        parameters=[OpenApiParameter("execution_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
    )
    @action(
        detail=False,
        methods=["post"],
        url_path=r"executions/(?P<execution_id>[0-9a-fA-F-]{32,36})/finish",
    )
    def finish(self, request, execution_id=None):
        """How a run of this worker ended. Idempotent: once the execution has been
        settled, by this report or otherwise (declared lost while the agent was
        unreachable, say), a report is ``ignored`` and changes nothing. 403 for another
        worker's execution."""
        data = validated(AgentFinishInputSerializer, request.data)
        [(recorded, status_now)] = agent_protocol.agent_settle_reporting(
            worker=request.user.worker,
            reports=[{"execution_id": execution_id, **data}],
        )
        body = {"result": "recorded" if recorded else "ignored", "status": status_now}
        return Response(AgentFinishSerializer(body).data)

    @extend_schema(request=AgentFinishManyInputSerializer, responses=AgentFinishManySerializer)
    @action(detail=False, methods=["post"], url_path="finish")
    def finish_many(self, request):
        """``finish`` for several runs that ended together (up to 100), recorded in one
        transaction; each result says whether its report was recorded or ignored. 403
        if any is another worker's execution (then none is recorded). With ``chunks``,
        stores their last output first, as ``logs`` would (403, and nothing stored or
        recorded, for a chunk of another worker's execution). With ``claim``, also
        claims up to that many queued executions once they are recorded, as ``claim``
        with no wait would: an agent's next claim in the same round trip."""
        data = validated(AgentFinishManyInputSerializer, request.data)
        reports, worker = data["reports"], request.user.worker
        if data["chunks"]:
            # Their output first: a reader that sees a run finished has seen all of it.
            agent_protocol.agent_store_logs(worker=worker, chunks=_log_chunks(data["chunks"]))
        settled = agent_protocol.agent_settle_reporting(worker=worker, reports=reports)
        results = [
            {
                "execution_id": report["execution_id"],
                "result": "recorded" if recorded else "ignored",
                "status": status_now,
            }
            for report, (recorded, status_now) in zip(reports, settled, strict=True)
        ]
        body = {"results": results}
        if data["claim"]:
            # The authentication has just checked the credential, as before a long-poll's
            # first claim; a draining or offline worker gets nothing (agent_claim).
            body["executions"] = agent_protocol.agent_claim(worker=worker, limit=data["claim"])
        return Response(AgentFinishManySerializer(body).data)

    @extend_schema(request=None, responses={204: None})
    @action(detail=False, methods=["post"])
    def offline(self, request):
        """The agent stops: its worker goes offline, and whatever it still ran is lost
        (and retried)."""
        agent_protocol.agent_go_offline(worker=request.user.worker)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _log_chunks(chunks: list[dict]) -> list[tuple[str, services.LogChunk]]:
    """Validated output chunks as agent_store_logs takes them."""
    return [
        (
            str(c["execution_id"]),
            services.LogChunk(
                seq=c["seq"], stream=c["stream"], message=c["message"], created_at=c["created_at"]
            ),
        )
        for c in chunks
    ]
