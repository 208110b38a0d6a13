"""The landing page every service serves at ``/``: where the admin, the APIs and their
documents are, and how to get credentials."""

from django.conf import settings
from django.shortcuts import render

from hodei import __version__
from hodei.lib.addresses import SERVICES, service_urls

ROLES = {
    "orchestrator": "pipelines, jobs, pipeline runs; the admin console",
    "scheduler": "schedules; the worker registry",
    "workermanager": "executions and their logs; managed workers; the agent protocol",
}


def landing_view(service: str):
    def landing(request):
        urls = service_urls()
        context = {
            "service": service,
            "version": __version__,
            "admin_url": f"{urls['orchestrator']}/admin/",
            "services": [
                {"name": name, "url": urls[name], "role": ROLES[name], "this": name == service}
                for name in SERVICES
            ],
            "credentials": settings.VAR_DIR / "admin-credentials",
        }
        return render(request, "hodei/landing.html", context)

    return landing
