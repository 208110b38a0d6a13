import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hodei.settings")

from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

from telemetry.tracing import setup_tracing  # noqa: E402

# Before the application loads its middleware: the Django instrumentation adds its own.
setup_tracing(settings.HODEI_SERVICE)
application = get_wsgi_application()
