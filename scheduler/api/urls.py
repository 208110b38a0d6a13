from django.urls import path

from scheduler.api.views import ScheduleViewSet, WorkerViewSet

schedule_list = ScheduleViewSet.as_view({"get": "list"})
schedule_create = ScheduleViewSet.as_view({"post": "create"})
schedule_detail = ScheduleViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
)
schedule_run = ScheduleViewSet.as_view({"post": "run"})
schedule_history = ScheduleViewSet.as_view({"get": "history"})
worker_list = WorkerViewSet.as_view({"get": "list", "post": "create"})
worker_detail = WorkerViewSet.as_view({"get": "retrieve"})
worker_heartbeat = WorkerViewSet.as_view({"post": "heartbeat"})

# The seed's paths: schedules are created at /schedule and listed at /scheduled.
urlpatterns = [
    path("api/v1/schedule", schedule_create, name="schedule-create"),
    path("api/v1/scheduled", schedule_list, name="schedule-list"),
    path("api/v1/scheduled/<str:pk>", schedule_detail, name="schedule-detail"),
    path("api/v1/scheduled/<str:pk>/run", schedule_run, name="schedule-run"),
    path("api/v1/scheduled/<str:pk>/history", schedule_history, name="schedule-history"),
    path("api/v1/workers", worker_list, name="worker-list"),
    path("api/v1/workers/<str:pk>", worker_detail, name="worker-detail"),
    path("api/v1/workers/<str:pk>/heartbeat", worker_heartbeat, name="worker-heartbeat"),
]
