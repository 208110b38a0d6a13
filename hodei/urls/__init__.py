"""Each service process serves one of these URLconfs (``HODEI_SERVICE`` picks it).

Every service has /health, /openapi.json (its own paths only), /swagger-ui, /metrics
and the browsable API's login pages."""

from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from console.metrics import metrics_view
from console.views import landing_view
from hodei.api.views import health_view


def router() -> SimpleRouter:
    # The seed's paths have no trailing slash.
    return SimpleRouter(trailing_slash=False)


def common_patterns(service: str, *, health_problems=None) -> list:
    return [
        path("", landing_view(service), name="landing"),
        path("health", health_view(service, health_problems), name="health"),
        path("metrics", metrics_view, name="metrics"),
        path(
            "openapi.json",
            # The JSON view: the plain one answers a client without an Accept header (curl)
            # with YAML, which /openapi.json must not.
            SpectacularJSONAPIView.as_view(
                custom_settings={
                    "TITLE": f"Hodei {service} API",
                    "POSTPROCESSING_HOOKS": [
                        "drf_spectacular.hooks.postprocess_schema_enums",
                        "hodei.api.schema.document_link_header",
                    ],
                },
                authentication_classes=[],
                permission_classes=[],
            ),
            name="schema",
        ),
        path(
            "swagger-ui",
            SpectacularSwaggerView.as_view(
                url_name="schema",
                title=f"Hodei {service} API",
                authentication_classes=[],
                permission_classes=[],
            ),
            name="swagger-ui",
        ),
        path("api-auth/", include("rest_framework.urls")),
    ]
