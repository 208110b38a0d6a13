from django.urls import include, path

from hodei.urls import common_patterns

urlpatterns = [*common_patterns("workermanager"), path("", include("workermanager.api.urls"))]
