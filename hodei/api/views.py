"""Small pieces the three APIs share: input parsing and the service-independent views."""

import functools

from django.db import connection
from django.db.utils import DatabaseError
from django.http import JsonResponse
from rest_framework.exceptions import ValidationError
from rest_framework.serializers import Serializer

from hodei import __version__


def validated(
    serializer_class: type[Serializer],
    data,
    *,
    echo: type[Serializer] | None = None,
    strict: bool = True,
    **kwargs,
) -> dict:
    """Validate request data with ``serializer_class``; a failure raises a 400 naming
    each bad field.

    ``strict`` (request bodies): a field the serializer does not know is a 400 naming it,
    never silently ignored (a misspelt ``timeout_second`` would otherwise do nothing), as
    Kubernetes' strict field validation does. Fields of the resource's output (``echo``:
    its read-only ``id``, ``status``...) are accepted and ignored, so a body read with GET
    can be sent back with PUT."""
    if strict and isinstance(data, dict):
        accepted = field_names(serializer_class)
        known = accepted | field_names(echo) if echo is not None else accepted
        unknown = sorted(str(name) for name in data if name not in known)
        if unknown:
            raise ValidationError({name: ["Unknown field."] for name in unknown})
        data = {name: value for name, value in data.items() if name in accepted}
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


@functools.cache
def field_names(serializer_class: type[Serializer]) -> frozenset[str]:
    """The names of a serializer's fields, once per class: building a ModelSerializer's
    fields costs about a millisecond, and the names never change."""
    return frozenset(serializer_class().fields)


def cascade_requested(request) -> bool:
    """``?cascade=true``: a delete may take dependent objects with it."""
    value = request.query_params.get("cascade", "").strip().lower()
    if value not in ("", "true", "false", "1", "0"):
        raise ValidationError({"cascade": ["Must be true or false."]})
    return value in ("true", "1")


def health_view(service: str, problems=None):
    """GET /health: 503 when the database is unreachable; "degraded" (still 200, with
    the reason) when ``problems()`` names one, such as no qcluster seen lately."""

    def health(request):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except DatabaseError as exc:
            connection.close_if_unusable_or_obsolete()
            return JsonResponse(
                {
                    "status": "unhealthy",
                    "service": service,
                    "version": __version__,
                    "database": "unreachable",
                    "detail": type(exc).__name__,
                },
                status=503,
            )
        body = {"status": "healthy", "service": service, "version": __version__, "database": "ok"}
        problem = problems() if problems else ""
        if problem:
            body.update(status="degraded", detail=problem)
        return JsonResponse(body)

    return health
