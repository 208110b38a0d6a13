from django.urls import include, path

from hodei.urls import common_patterns

urlpatterns = [
    *common_patterns("scheduler"),
    path("", include("scheduler.api.urls")),
    path("", include("workermanager.api.registry_urls")),
]
