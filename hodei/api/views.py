"""Small pieces the three APIs share: input parsing and the service-independent views."""

from django.db import connection
from django.db.utils import DatabaseError
from django.http import JsonResponse
from rest_framework.serializers import Serializer

from hodei import __version__


def validated(serializer_class: type[Serializer], data, **kwargs) -> dict:
    """Validate request data with ``serializer_class``; a failure raises a 400 naming
    each bad field."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def health_view(service: str):
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
        return JsonResponse(
            {"status": "healthy", "service": service, "version": __version__, "database": "ok"}
        )

    return health
