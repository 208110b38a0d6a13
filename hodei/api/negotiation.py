"""Content negotiation: DRF's, answered at once for a request that states no preference."""

from rest_framework.negotiation import DefaultContentNegotiation


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, except that a request with no ``Accept`` header (or ``*/*``,
    what curl and most HTTP libraries send), no format suffix and no query string gets
    the view's first renderer without parsing anything: the answer DRF would give
    (``*/*`` matches the first renderer, whose own media type is then the accepted
    one), for most API requests, without building the query's dictionary and parsing
    media types on every request."""

    def select_renderer(self, request, renderers, format_suffix=None):
        meta = request.META
        if (
            not format_suffix
            and renderers
            and not meta.get("QUERY_STRING")
            and meta.get("HTTP_ACCEPT", "*/*") == "*/*"
        ):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
