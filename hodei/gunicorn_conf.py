"""Gunicorn settings shared by the three API services (see the Procfile)."""

import os

workers = int(os.environ.get("HODEI_WEB_WORKERS", "2"))
threads = int(os.environ.get("HODEI_WEB_THREADS", "4"))
timeout = 60
graceful_timeout = 5
accesslog = "-" if os.environ.get("HODEI_ACCESS_LOG", "1") == "1" else None
errorlog = "-"
forwarded_allow_ips = os.environ.get("HODEI_FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_exit(server):
    # Managed workers run in sessions of their own so a crashing web worker cannot take
    # them down; when the service itself stops, it stops the agents it started here.
    if os.environ.get("HODEI_SERVICE") != "workermanager":
        return
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hodei.settings")

    django.setup()
    from workermanager.services import managed_workers_stop_local

    managed_workers_stop_local()
