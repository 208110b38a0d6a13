from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts import permissions
from hodei.api.views import validated
from scheduler import services
from scheduler.api.filters import ScheduleFilter
from scheduler.api.serializers import (
    ScheduleFireSerializer,
    ScheduleInputSerializer,
    ScheduleSerializer,
)
from scheduler.models import Schedule


@extend_schema(tags=["schedules"])
class ScheduleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Schedules: when a job, or a whole pipeline, runs by itself."""

    queryset = Schedule.objects.all()
    serializer_class = ScheduleSerializer
    filterset_class = ScheduleFilter

    action_permissions = {"run": "change", "history": "view"}

    @extend_schema(request=ScheduleInputSerializer, responses={201: ScheduleSerializer})
    def create(self, request):
        """Create a schedule of a job (``job_id``) or of a pipeline (``pipeline_id``:
        each slot starts a pipeline run), exactly one. It will run commands: that needs
        the run permission too."""
        data = validated(ScheduleInputSerializer, request.data, echo=ScheduleSerializer)
        if services.schedule_makes_commands_run(schedule=None, changes=data):
            permissions.require_run(request.user)
        schedule = services.schedule_create(**data)
        return Response(ScheduleSerializer(schedule).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ScheduleInputSerializer, responses=ScheduleSerializer)
    def partial_update(self, request, pk=None):
        """Pause (``"enabled": false``), resume, or change the timing or policies; the
        next fire times are recomputed from now."""
        schedule = self.get_object()
        data = validated(
            ScheduleInputSerializer,
            request.data,
            partial=True,
            instance=schedule,
            echo=ScheduleSerializer,
        )
        if services.schedule_makes_commands_run(schedule=schedule, changes=data):
            permissions.require_run(request.user)
        schedule = services.schedule_update(schedule=schedule, **data)
        return Response(ScheduleSerializer(schedule).data)

    def destroy(self, request, pk=None):
        services.schedule_delete(schedule=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={201: ScheduleFireSerializer})
    @action(detail=True, methods=["post"])
    def run(self, request, pk=None):
        """Fire now, respecting the overlap policy (a skipped run is recorded as such);
        the run permission."""
        schedule = self.get_object()
        permissions.require_run(request.user)
        fire = services.schedule_run_now(schedule=schedule)
        return Response(ScheduleFireSerializer(fire).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=ScheduleFireSerializer(many=True))
    @action(detail=True, methods=["get"])
    def history(self, request, pk=None):
        """Slots handled by this schedule, newest first: fired, skipped, missed."""
        schedule = self.get_object()
        page = self.paginate_queryset(schedule.fires.order_by("-id"))
        return self.get_paginated_response(ScheduleFireSerializer(page, many=True).data)
