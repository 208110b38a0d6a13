import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse


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
