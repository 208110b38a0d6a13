"""Hodei's one error hierarchy and the DRF handler that renders every error one way.

Every API error body has the shape ``{"error": code, "detail": message}``, plus
``"fields": {name: [messages]}`` for validation errors, so a client can always point at
the offending field.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class HodeiError(Exception):
    """Base of every domain error."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "error"

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields


class InvalidInput(HodeiError):
    code = "invalid"


class NotFound(HodeiError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Conflict(HodeiError):
    """A state change that the object's current state does not allow."""

    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class QuotaExceeded(Conflict):
    """A configured limit (schedules per job, managed workers...) is reached."""

    code = "quota_exceeded"


class Forbidden(HodeiError):
    """The user may not do this (a permission beyond the model's, such as running)."""

    status_code = status.HTTP_403_FORBIDDEN
    code = "permission_denied"


class Unavailable(HodeiError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "unavailable"


def _as_list(value) -> list[str]:
    if isinstance(value, list | tuple):
        out: list[str] = []
        for item in value:
            out.extend(_as_list(item))
        return out
    if isinstance(value, dict):
        return [f"{key}: {msg}" for key, msgs in value.items() for msg in _as_list(msgs)]
    return [str(value)]


def _validation_body(detail) -> dict:
    if isinstance(detail, dict):
        fields = {}
        for name, msgs in detail.items():
            fields["body" if name == "non_field_errors" else str(name)] = _as_list(msgs)
    else:
        fields = {"body": _as_list(detail)}
    names = ", ".join(sorted(fields))
    return {"error": "invalid", "detail": f"Invalid input: {names}.", "fields": fields}


def api_exception_handler(exc, context):
    if isinstance(exc, HodeiError):
        body = {"error": exc.code, "detail": exc.message}
        if exc.fields:
            body["fields"] = exc.fields
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"body": exc.messages}
        return Response(_validation_body(detail), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()

    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.ValidationError):
        response.data = _validation_body(exc.detail)
    elif isinstance(exc, drf_exceptions.APIException):
        response.data = {"error": exc.default_code, "detail": str(exc.detail)}
    return response
