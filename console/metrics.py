import os

from django.conf import settings
from django.http import HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, PermissionDenied
from rest_framework.request import Request

from accounts.authentication import BearerTokenAuthentication
from console.collector import DomainCollector

_domain = CollectorRegistry(auto_describe=False)
_domain.register(DomainCollector())


def _process_registry():
    """HTTP and database metrics of this service: across every gunicorn worker in
    multiprocess mode (PROMETHEUS_MULTIPROC_DIR), else this process's own."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_view(request):
    """Prometheus text format. Needs a bearer token or a session (any authenticated user
    with a view permission on executions) unless HODEI_METRICS_PUBLIC=1."""
    if not settings.HODEI_METRICS_PUBLIC:
        try:
            token_auth = BearerTokenAuthentication().authenticate(Request(request))
        except AuthenticationFailed:
            return _refuse(NotAuthenticated(), 401)
        user = token_auth[0] if token_auth else request.user
        if not user.is_authenticated:
            return _refuse(NotAuthenticated(), 401)
        if not user.has_perm("workermanager.view_execution"):
            return _refuse(PermissionDenied(), 403)
    body = generate_latest(_process_registry()) + generate_latest(_domain)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def _refuse(exc, status: int) -> HttpResponse:
    response = HttpResponse(
        f'{{"error": "{exc.default_code}", "detail": "{exc.default_detail}"}}',
        status=status,
        content_type="application/json",
    )
    if status == 401:
        response["WWW-Authenticate"] = "Bearer"
    return response
