from django.urls import include, path

from hodei.urls import router
from orchestrator.api.views import JobViewSet, PipelineViewSet

api = router()
api.register("pipelines", PipelineViewSet, basename="pipeline")
api.register("jobs", JobViewSet, basename="job")

urlpatterns = [path("api/v1/", include(api.urls))]
