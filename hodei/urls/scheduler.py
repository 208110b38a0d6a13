from django.urls import include, path

from hodei.urls import common_patterns
from scheduler.health import cluster_problem

urlpatterns = [
    # Degraded while no qcluster runs: nothing fires.
    *common_patterns("scheduler", health_problems=cluster_problem),
    path("", include("scheduler.api.urls")),
    path("", include("workermanager.api.registry_urls")),
]
