from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from hodei.api.views import cascade_requested, validated
from orchestrator import services
from orchestrator.api.filters import JobFilter, PipelineFilter
from orchestrator.api.serializers import (
    JobInputSerializer,
    JobSerializer,
    JobStatusSerializer,
    PipelineInputSerializer,
    PipelineSerializer,
)
from orchestrator.models import Job, Pipeline

CASCADE_PARAMETER = OpenApiParameter(
    "cascade",
    bool,
    description="Also delete its schedules. Without it, a job with schedules is a 409 that "
    "names them. Executions are kept as history either way.",
)


@extend_schema(tags=["pipelines"])
class PipelineViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Pipelines: named groups of jobs."""

    queryset = Pipeline.objects.all()
    serializer_class = PipelineSerializer
    filterset_class = PipelineFilter

    @extend_schema(request=PipelineInputSerializer, responses={201: PipelineSerializer})
    def create(self, request):
        data = validated(PipelineInputSerializer, request.data, echo=PipelineSerializer)
        pipeline = services.pipeline_create(**data)
        return Response(PipelineSerializer(pipeline).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PipelineInputSerializer, responses=PipelineSerializer)
    def update(self, request, pk=None):
        return self._update(request, partial=False)

    @extend_schema(request=PipelineInputSerializer, responses=PipelineSerializer)
    def partial_update(self, request, pk=None):
        return self._update(request, partial=True)

    def _update(self, request, *, partial: bool):
        pipeline = self.get_object()
        data = validated(
            PipelineInputSerializer, request.data, partial=partial, echo=PipelineSerializer
        )
        pipeline = services.pipeline_update(pipeline=pipeline, **data)
        return Response(PipelineSerializer(pipeline).data)

    @extend_schema(parameters=[CASCADE_PARAMETER])
    def destroy(self, request, pk=None):
        """Delete the pipeline and its jobs; 409 if a job has schedules, unless cascade."""
        services.pipeline_delete(pipeline=self.get_object(), cascade=cascade_requested(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["jobs"])
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Jobs: commands to run, with the defaults of every execution started from them."""

    queryset = Job.objects.prefetch_related("depends_on")
    serializer_class = JobSerializer
    filterset_class = JobFilter
    action_permissions = {"job_status": "view"}

    @extend_schema(request=JobInputSerializer, responses={201: JobSerializer})
    def create(self, request):
        job = services.job_create(**validated(JobInputSerializer, request.data, echo=JobSerializer))
        return Response(self._render(job), status=status.HTTP_201_CREATED)

    @extend_schema(request=JobInputSerializer, responses=JobSerializer)
    def update(self, request, pk=None):
        return self._update(request, partial=False)

    @extend_schema(request=JobInputSerializer, responses=JobSerializer)
    def partial_update(self, request, pk=None):
        return self._update(request, partial=True)

    @extend_schema(responses=JobStatusSerializer)
    @action(detail=True, methods=["get"], url_path="status")
    def job_status(self, request, pk=None):
        job = self.get_object()
        return Response({"id": str(job.id), "status": job.status})

    def _update(self, request, *, partial: bool):
        job = self.get_object()
        data = validated(JobInputSerializer, request.data, partial=partial, echo=JobSerializer)
        job = services.job_update(job=job, **data)
        return Response(self._render(job))

    @extend_schema(parameters=[CASCADE_PARAMETER])
    def destroy(self, request, pk=None):
        """Delete the job; 409 naming its schedules if it has any, unless cascade."""
        services.job_delete(job=self.get_object(), cascade=cascade_requested(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _render(self, job: Job) -> dict:
        job = Job.objects.prefetch_related("depends_on").get(pk=job.pk)
        return JobSerializer(job).data
