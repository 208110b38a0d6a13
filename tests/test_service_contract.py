"""What every service serves besides its API: health, its own OpenAPI document, an offline
Swagger UI. Health is also checked over real HTTP against a real gunicorn process."""

import json
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from django.conf import settings
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.validation import validate_schema

from hodei import __version__
from scheduler.health import cluster_seen
from tests.conftest import ServiceClient
from tests.processes import start_service, stop

pytestmark = pytest.mark.django_db

SERVICES = ["orchestrator", "scheduler", "workermanager"]

# Paths each service must document; the others' paths must be absent from its document.
OWN_PATHS = {
    "orchestrator": {
        "/api/v1/pipelines",
        "/api/v1/pipelines/{id}",
        "/api/v1/jobs",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs/{id}/status",
    },
    "scheduler": {
        "/api/v1/schedule",
        "/api/v1/scheduled",
        "/api/v1/scheduled/{id}",
        "/api/v1/workers",
        "/api/v1/workers/{id}",
        "/api/v1/workers/{id}/heartbeat",
    },
    "workermanager": {
        "/api/v1/execute",
        "/api/v1/executions",
        "/api/v1/executions/{id}",
        "/api/v1/executions/{id}/logs",
        "/api/v1/executions/{id}/cancel",
        "/api/v1/executions/{id}/retry",
    },
}
# /api/v1/workers exists on both the scheduler (registry) and the worker manager
# (managed workers), as in the seed.
SHARED_PATHS = {"/api/v1/workers", "/api/v1/workers/{id}"}

BASE_DIR = Path(settings.BASE_DIR)
GUNICORN = Path(sys.executable).parent / "gunicorn"


@pytest.mark.parametrize("service", SERVICES)
def test_it_serves_health(service, db):
    cluster_seen()  # a qcluster runs (without one the scheduler is "degraded")
    response = ServiceClient(service).get("/health")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "healthy"
    assert body["service"] == service
    assert body["version"] == __version__


@pytest.mark.parametrize("service", SERVICES)
def test_it_serves_its_own_openapi_document(service):
    GENERATOR_STATS.reset()
    response = ServiceClient(service).get("/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/")
    assert "json" in response["Content-Type"]
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.")
    assert service in document["info"]["title"]
    validate_schema(document)
    assert not GENERATOR_STATS, dict(GENERATOR_STATS._warn_cache | GENERATOR_STATS._error_cache)

    paths = set(document["paths"])
    assert OWN_PATHS[service] <= paths
    others = set().union(*(OWN_PATHS[s] for s in SERVICES if s != service)) - SHARED_PATHS
    assert not paths & others, paths & others
    assert all(p.startswith("/api/v1/") for p in paths), paths


def test_a_client_without_accept_header_gets_json_from_openapi_json():
    response = ServiceClient("orchestrator").get("/openapi.json", HTTP_ACCEPT="*/*")
    assert response.status_code == 200
    assert json.loads(response.content)["openapi"].startswith("3.")


def test_the_openapi_document_declares_bearer_auth():
    document = json.loads(ServiceClient("scheduler").get("/openapi.json").content)
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    operation = document["paths"]["/api/v1/workers"]["get"]
    assert {"bearerAuth": []} in operation["security"]


def test_the_openapi_document_describes_list_paging():
    document = json.loads(ServiceClient("orchestrator").get("/openapi.json").content)
    operation = document["paths"]["/api/v1/jobs"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"cursor", "limit", "status", "pipeline_id", "type"} <= names
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert schema["type"] == "array"  # a bare array, as served
    assert schema["items"] == {"$ref": "#/components/schemas/Job"}
    assert operation["responses"]["200"]["headers"]["Link"]["schema"] == {"type": "string"}


@pytest.mark.parametrize("service", SERVICES)
def test_every_list_documents_its_link_header(service):
    document = json.loads(ServiceClient(service).get("/openapi.json").content)
    lists = 0
    for path, item in document["paths"].items():
        if "get" not in item:
            continue
        operation = item["get"]
        headers = operation["responses"]["200"].get("headers", {})
        paginated = any(p["name"] == "cursor" for p in operation.get("parameters", []))
        assert ("Link" in headers) == paginated, path
        lists += paginated
    assert lists >= 1


@pytest.mark.parametrize("service", SERVICES)
def test_swagger_ui_uses_only_local_assets(service):
    client = ServiceClient(service)
    response = client.get("/swagger-ui")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert not re.search(r"https?://", html), re.findall(r"https?://[^\s\"'<>]+", html)

    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets), assets
    assert any(a.endswith("swagger-ui.css") for a in assets), assets
    for asset in assets:
        assert asset.startswith("/static/"), asset
        served = client.get(asset)
        assert served.status_code == 200, asset
        body = b"".join(served.streaming_content) if served.streaming else served.content
        assert len(body) > 100, asset
    assert '"/openapi.json"' in html
    assert f"<title>Hodei {service} API</title>" in html


# -- real processes ----------------------------------------------------------------


@contextmanager
def gunicorn(service: str, database_url: str):
    env = {**os.environ, "DATABASE_URL": database_url, "HODEI_DEV": "1", "PYTHONUNBUFFERED": "1"}
    proc, base = start_service(env, service, healthy=False)
    try:
        yield base
    finally:
        stop(proc)


@pytest.mark.postgres
def test_a_real_process_serves_its_health_and_only_its_api(live_db_url, transactional_db):
    cluster_seen()
    with gunicorn("scheduler", live_db_url) as base:
        response = requests.get(base + "/health", timeout=10)
        assert response.status_code == 200
        assert response.json()["status"] == "healthy"
        assert response.json()["service"] == "scheduler"
        assert requests.get(base + "/api/v1/scheduled", timeout=10).status_code == 401
        assert requests.get(base + "/api/v1/pipelines", timeout=10).status_code == 404
        document = requests.get(base + "/openapi.json", timeout=10)
        assert document.headers["Content-Type"].startswith("application/")
        assert "/api/v1/schedule" in document.json()["paths"]


def test_health_is_503_when_the_database_is_unreachable():
    with gunicorn("orchestrator", "postgres://postgres@127.0.0.1:1/nowhere") as base:
        response = requests.get(base + "/health", timeout=15)
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unhealthy"
        assert body["service"] == "orchestrator"
        assert body["version"] == __version__


@pytest.mark.parametrize("service", SERVICES)
def test_the_landing_page_links_everything_an_operator_needs(service):
    response = ServiceClient(service).get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "http://127.0.0.1:8080/admin/" in html
    for port in (8080, 8081, 8082):
        for path in ("swagger-ui", "openapi.json", "health", "metrics"):
            assert f"http://127.0.0.1:{port}/{path}" in html, (port, path)
    assert "admin-credentials" in html and "createtoken" in html


@pytest.mark.parametrize("service", SERVICES)
def test_operations_are_grouped_by_resource_and_take_the_bearer_token(service):
    schema = ServiceClient(service).get("/openapi.json").json()
    tags = {tag for item in schema["paths"].values() for op in item.values() for tag in op["tags"]}
    assert "api" not in tags
    assert tags <= {
        "pipelines",
        "jobs",
        "schedules",
        "workers",
        "executions",
        "managed workers",
        "runs",
        "agent",
        "pools",
        "webhooks",
        "events",
    }, tags
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for item in schema["paths"].values():
        for operation in item.values():
            if operation["tags"] == ["agent"]:
                # Agents take their worker credential (register: a registration token),
                # never a user's API token.
                assert operation["security"] in (
                    [{"workerCredential": []}],
                    [{"registrationToken": []}],
                ), operation["operationId"]
                continue
            assert operation["security"].count({"bearerAuth": []}) == 1


def test_the_browsable_api_is_titled_hodei(admin_user):
    client = ServiceClient("orchestrator")
    client.force_login(admin_user)
    html = client.get("/api/v1/jobs", HTTP_ACCEPT="text/html").content.decode()
    assert "<title>" in html and "Hodei API" in html and "Django REST framework" not in html
