"""Lists are bare JSON arrays (the seed's clients index into them); the way to the next
page travels in an RFC 8288 ``Link`` header, cursor based so that deep pages cost the
same as the first and rows inserted meanwhile never shift a page."""

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response


class LinkHeaderCursorPagination(CursorPagination):
    # UUIDv7 primary keys sort by creation time and never change: a stable cursor.
    ordering = "-id"
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "limit"
    cursor_query_param = "cursor"

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None or raw == "":
            return self.page_size
        try:
            value = int(raw)
        except ValueError:
            raise ValidationError({"limit": ["Must be an integer between 1 and 1000."]}) from None
        if value < 1:
            raise ValidationError({"limit": ["Must be an integer between 1 and 1000."]})
        return min(value, self.max_page_size)

    def decode_cursor(self, request):
        if request.query_params.get(self.cursor_query_param) == "":
            return None
        cursor = super().decode_cursor(request)
        # Every cursor this class hands out carries a position, an offset or a direction;
        # one without (base64 that decodes to nothing, such as "%00") was not ours.
        if cursor is not None and cursor == (0, False, None):
            raise NotFound(self.invalid_cursor_message)
        return cursor

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except (NotFound, DjangoValidationError):
            # NotFound: undecodable cursor. DjangoValidationError: a well-formed cursor
            # whose position is not an id (the filter on the primary key rejects it).
            raise ValidationError({"cursor": ["Invalid cursor."]}) from None

    def get_paginated_response(self, data):
        links = []
        next_url = self.get_next_link()
        previous_url = self.get_previous_link()
        if next_url:
            links.append(f'<{next_url}>; rel="next"')
        if previous_url:
            links.append(f'<{previous_url}>; rel="prev"')
        headers = {"Link": ", ".join(links)} if links else {}
        return Response(data, headers=headers)

    def get_paginated_response_schema(self, schema):
        return schema

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Opaque cursor from the previous page's Link header.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": "Items per page (default 100, at most 1000).",
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
            },
        ]
