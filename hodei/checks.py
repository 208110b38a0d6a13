"""System checks for dangerous settings (``manage.py check``; ``--deploy`` adds the
production ones). Every service runs the plain ones when it starts. Checks that read an
app's tables live in that app (workermanager.checks)."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


def _production() -> bool:
    return not settings.HODEI_DEV


@register(Tags.security)
def check_debug(app_configs, **kwargs):
    if settings.DEBUG and _production():
        return [
            Error(
                "DEBUG is on outside development: error pages show settings and code.",
                hint="Unset DEBUG (or set HODEI_DEV=1 on a development machine).",
                id="hodei.E001",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_allowed_hosts(app_configs, **kwargs):
    if "*" in settings.ALLOWED_HOSTS:
        return [
            Warning(
                "ALLOWED_HOSTS accepts any host name (Host header attacks, cache poisoning).",
                hint="List the names the services are reached by.",
                id="hodei.W001",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_metrics_public(app_configs, **kwargs):
    if settings.HODEI_METRICS_PUBLIC:
        return [
            Warning(
                "HODEI_METRICS_PUBLIC=1 serves /metrics without authentication: job, worker "
                "and queue figures to anyone who reaches the ports.",
                hint="Only when nothing but Prometheus can reach them; otherwise give "
                "Prometheus a token (docs/operations.md).",
                id="hodei.W002",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_development_mode(app_configs, **kwargs):
    if settings.HODEI_DEV:
        return [
            Warning(
                "HODEI_DEV=1: development defaults (a public SECRET_KEY if none is set).",
                hint="Unset HODEI_DEV in production.",
                id="hodei.W003",
            )
        ]
    return []
