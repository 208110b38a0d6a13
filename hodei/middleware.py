import json

from django.conf import settings
from django.contrib.messages import middleware as messages_middleware
from django.contrib.messages.storage import default_storage
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse
from django.utils.functional import SimpleLazyObject, empty
from django_prometheus import middleware as prometheus_middleware


def _too_large(limit: int) -> HttpResponse:
    body = {"error": "too_large", "detail": f"Request body exceeds {limit} bytes."}
    return HttpResponse(json.dumps(body), status=413, content_type="application/json")


class BodySizeLimitMiddleware:
    """Refuse oversized request bodies with 413 before any parser reads them.

    DRF's parsers read the WSGI stream directly and would bypass Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE, so the limit is enforced here, once, for every view.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.limit = settings.HODEI_MAX_BODY_BYTES

    def __call__(self, request):
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0
            if declared > self.limit:
                return _too_large(self.limit)
            try:
                request.body  # noqa: B018 - reads and caches the body within the limit
            except RequestDataTooBig:
                return _too_large(self.limit)
        return self.get_response(request)


# Everything the admin and the landing page load comes from Hodei itself; the admin's
# widgets set inline styles, nothing runs inline script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


class ContentSecurityPolicyMiddleware:
    """A Content-Security-Policy on the pages people open in a browser: the admin and
    the landing page (Swagger UI and the browsable API bring inline scripts of their
    own, and API responses are JSON)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path == "/" or request.path.startswith("/admin/"):
            response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


class MessageMiddleware(messages_middleware.MessageMiddleware):
    """Django's messages middleware, with the request's message storage made when
    something first uses it (the admin adding or showing a message) rather than for
    every request: building it (a cookie signer, a session storage) was a tenth of a
    plain request's work, for API requests that never have messages. A request that
    never used it has nothing to store, as in Django: its storage would be neither
    used nor added to."""

    def process_request(self, request):
        request._messages = SimpleLazyObject(lambda: default_storage(request))

    def process_response(self, request, response):
        storage = request.__dict__.get("_messages")
        if isinstance(storage, SimpleLazyObject) and storage._wrapped is empty:
            return response
        return super().process_response(request, response)


class PrometheusAfterMiddleware(prometheus_middleware.PrometheusAfterMiddleware):
    """django-prometheus' metrics by view, method and status: the same series, each
    labelled child looked up once per process instead of by ``labels()`` (its checks,
    conversions and lock) about ten times per request."""

    def __init__(self, get_response=None):
        super().__init__(get_response)
        self._children = {}

    def label_metric(self, metric, request, response=None, **labels):
        if not labels:
            return metric
        key = (metric, *labels.items())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(**labels)
        return child
