from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts import permissions
from hodei.api.views import validated
from orchestrator.models import Pipeline
from pipelines import services
from pipelines.api.filters import PipelineRunFilter
from pipelines.api.serializers import PipelineRunSerializer, RunInputSerializer
from pipelines.choices import RunTrigger
from pipelines.models import PipelineRun


@extend_schema(tags=["runs"])
class PipelineRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Pipeline runs: each a run of a pipeline's jobs as a DAG, with every job's state."""

    queryset = PipelineRun.objects.all()
    serializer_class = PipelineRunSerializer
    filterset_class = PipelineRunFilter
    action_permissions = {"cancel": "change", "retry": permissions.RUN}

    def get_serializer_context(self):
        # A list shows runs; each run's jobs are on its own page.
        return {**super().get_serializer_context(), "with_jobs": self.action != "list"}

    @extend_schema(request=None, responses=PipelineRunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel: pending and queued jobs end cancelled, running ones are killed. 409 on
        a finished run."""
        run = services.pipeline_run_cancel(run=self.get_object())
        return Response(PipelineRunSerializer(run).data)

    @extend_schema(request=None, responses=PipelineRunSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """Run a failed or cancelled run's failed, cancelled and skipped jobs again, in
        the same run, keeping what succeeded (the run permission)."""
        run = services.pipeline_run_retry(run=self.get_object())
        return Response(PipelineRunSerializer(run).data)


@extend_schema(tags=["runs"])
class PipelineRunStartViewSet(viewsets.GenericViewSet):
    """A pipeline's run endpoints, under /api/v1/pipelines/{id}/ (served by this app: the
    orchestrator's pipeline views know nothing of runs)."""

    queryset = Pipeline.objects.all()
    serializer_class = PipelineRunSerializer
    action_permissions = {"run": permissions.RUN, "runs": "pipelines.view_pipelinerun"}

    @extend_schema(request=RunInputSerializer, responses={201: PipelineRunSerializer})
    def run(self, request, pk=None):
        """Run the pipeline's jobs (or ``jobs`` and what they need) as a DAG, with
        ``env`` for every job. Needs the run permission; 409 for an archived pipeline."""
        pipeline = self.get_object()
        data = validated(RunInputSerializer, request.data)
        run = services.pipeline_run_start(
            pipeline=pipeline, jobs=data.get("jobs"), env=data.get("env"), trigger=RunTrigger.API
        )
        return Response(PipelineRunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=PipelineRunSerializer(many=True))
    def runs(self, request, pk=None):
        """The pipeline's runs, newest first."""
        pipeline = self.get_object()
        page = self.paginate_queryset(PipelineRun.objects.filter(pipeline=pipeline))
        data = PipelineRunSerializer(page, many=True, context={"with_jobs": False}).data
        return self.get_paginated_response(data)
