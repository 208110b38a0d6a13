"""Each service process serves one of these URLconfs (``HODEI_SERVICE`` picks it).

Every service has /health, /openapi.json (its own paths only), /swagger-ui, /metrics
where wired, and the browsable API's login pages."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from hodei.api.views import health_view


def router() -> SimpleRouter:
    # The seed's paths have no trailing slash.
    return SimpleRouter(trailing_slash=False)


def common_patterns(service: str) -> list:
    return [
        path("health", health_view(service), name="health"),
        path(
            "openapi.json",
            SpectacularAPIView.as_view(
                custom_settings={"TITLE": f"Hodei {service} API"},
                authentication_classes=[],
                permission_classes=[],
            ),
            name="schema",
        ),
        path(
            "swagger-ui",
            SpectacularSwaggerView.as_view(
                url_name="schema", authentication_classes=[], permission_classes=[]
            ),
            name="swagger-ui",
        ),
        path("api-auth/", include("rest_framework.urls")),
    ]
