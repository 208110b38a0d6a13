"""Where each service is reached: the landing page, the admin's links and `bootstrap`
print these. ``HODEI_<SERVICE>_URL`` sets one explicitly (behind a proxy, on a cluster);
otherwise the address and ports `make run` serves on."""

import os

SERVICES = ("orchestrator", "scheduler", "workermanager")
DEFAULT_PORTS = {"orchestrator": "8080", "scheduler": "8081", "workermanager": "8082"}


def service_urls() -> dict[str, str]:
    host = os.environ.get("HODEI_PUBLIC_HOST") or os.environ.get("HODEI_BIND", "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    urls = {}
    for name in SERVICES:
        explicit = os.environ.get(f"HODEI_{name.upper()}_URL", "").rstrip("/")
        port = os.environ.get(f"HODEI_{name.upper()}_PORT", DEFAULT_PORTS[name])
        urls[name] = explicit or f"http://{host}:{port}"
    return urls
