from django.urls import include, path

from hodei.urls import router
from pipelines.api.views import PipelineRunStartViewSet, PipelineRunViewSet

api = router()
api.register("runs", PipelineRunViewSet, basename="pipelinerun")

urlpatterns = [
    path(
        "api/v1/pipelines/<str:pk>/run",
        PipelineRunStartViewSet.as_view({"post": "run"}),
        name="pipeline-run",
    ),
    path(
        "api/v1/pipelines/<str:pk>/runs",
        PipelineRunStartViewSet.as_view({"get": "runs"}),
        name="pipeline-runs",
    ),
    path("api/v1/", include(api.urls)),
]
