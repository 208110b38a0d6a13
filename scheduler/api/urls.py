from django.urls import path

from scheduler.api.views import ScheduleViewSet

schedule_list = ScheduleViewSet.as_view({"get": "list"})
# POST creates at the seed's /schedule; GET lists there too, as at /scheduled.
schedule_create = ScheduleViewSet.as_view({"post": "create", "get": "list"})
schedule_detail = ScheduleViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
)
schedule_run = ScheduleViewSet.as_view({"post": "run"})
schedule_history = ScheduleViewSet.as_view({"get": "history"})

# The seed's paths: schedules are created at /schedule and listed at /scheduled.
urlpatterns = [
    path("api/v1/schedule", schedule_create, name="schedule-create-list"),
    path("api/v1/scheduled", schedule_list, name="schedule-list"),
    path("api/v1/scheduled/<str:pk>", schedule_detail, name="schedule-detail"),
    path("api/v1/scheduled/<str:pk>/run", schedule_run, name="schedule-run"),
    path("api/v1/scheduled/<str:pk>/history", schedule_history, name="schedule-history"),
]
