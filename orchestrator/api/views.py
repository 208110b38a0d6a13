from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.settings import api_settings

from hodei.api.parsers import JSONParser, YAMLParser
from hodei.api.renderers import YAMLRenderer
from hodei.api.views import cascade_requested, validated
from orchestrator import definitions, services
from orchestrator.api.filters import JobFilter, PipelineFilter
from orchestrator.api.serializers import (
    JobInputSerializer,
    JobSerializer,
    JobStatusSerializer,
    PipelineInputSerializer,
    PipelineSerializer,
)
from orchestrator.models import Job, Pipeline

DRY_RUN_PARAMETER = OpenApiParameter(
    "dry_run", bool, description="Validate and say what would change; change nothing."
)


class ApplyResultSerializer(serializers.Serializer):
    pipeline_id = serializers.UUIDField(allow_null=True)
    dry_run = serializers.BooleanField()
    created = serializers.BooleanField()
    pipeline_changes = serializers.ListField(child=serializers.CharField())
    added = serializers.ListField(child=serializers.CharField())
    changed = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    removed = serializers.ListField(child=serializers.CharField())


def _apply(request, *, pipeline) -> Response:
    if not isinstance(request.data, dict):
        raise ValidationError({"document": ["A pipeline document is a mapping."]})
    dry_run = request.query_params.get("dry_run", "").lower() in ("1", "true")
    if dry_run:
        target = pipeline or definitions.pipeline_named(request.data.get("name"))
        result = definitions.plan(request.data, pipeline=target)
    else:
        result = definitions.apply(request.data, pipeline=pipeline)
    body = {
        **result.summary(),
        "pipeline_id": result.pipeline.pk if result.pipeline else None,
        "dry_run": dry_run,
    }
    return Response(ApplyResultSerializer(body).data)


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

    @extend_schema(
        methods=["GET"],
        responses={200: OpenApiTypes.OBJECT},
        description="The pipeline as a document (pipelines as code): YAML for "
        "`Accept: application/yaml`, JSON otherwise. Secret variables appear by name only.",
    )
    @extend_schema(
        methods=["PUT"],
        request=OpenApiTypes.OBJECT,
        parameters=[DRY_RUN_PARAMETER],
        responses={200: ApplyResultSerializer},
        description="Apply a document (YAML or JSON) to this pipeline, atomically: jobs "
        "matched by name are changed, others added or removed; unchanged jobs keep their "
        "ids. Every problem is a 400 naming the job and field.",
    )
    @action(
        detail=True,
        methods=["get", "put"],
        parser_classes=[JSONParser, YAMLParser],
        renderer_classes=[*api_settings.DEFAULT_RENDERER_CLASSES, YAMLRenderer],
    )
    def definition(self, request, pk=None):
        pipeline = self.get_object()
        if request.method == "GET":
            return Response(definitions.export(pipeline))
        return _apply(request, pipeline=pipeline)

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        parameters=[DRY_RUN_PARAMETER],
        responses={200: ApplyResultSerializer},
        description="Create or update the pipeline a document names (by name), atomically.",
    )
    @action(
        detail=False,
        methods=["post"],
        parser_classes=[JSONParser, YAMLParser],
        url_path="apply",
    )
    def apply(self, request):
        return _apply(request, pipeline=None)

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
