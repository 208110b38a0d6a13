from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from hodei.urls import common_patterns

urlpatterns = [
    *common_patterns("orchestrator"),
    path("admin", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("", include("orchestrator.api.urls")),
    path("", include("pipelines.api.urls")),
    path("", include("webhooks.api.urls")),
]
