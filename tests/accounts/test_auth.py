"""Authentication and permissions across the three APIs."""

import hashlib
import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from accounts.models import ApiToken, token_create
from orchestrator.models import Pipeline
from tests.conftest import ServiceClient
from tests.factories import (
    ExecutionFactory,
    JobFactory,
    PipelineFactory,
    UserFactory,
    WorkerFactory,
)

pytestmark = pytest.mark.django_db

LIST_ENDPOINTS = [
    ("orchestrator", "/api/v1/pipelines"),
    ("orchestrator", "/api/v1/jobs"),
    ("scheduler", "/api/v1/scheduled"),
    ("scheduler", "/api/v1/workers"),
    ("workermanager", "/api/v1/executions"),
]

WRITE_ENDPOINTS = [
    ("orchestrator", "/api/v1/pipelines", {"name": "p"}),
    ("orchestrator", "/api/v1/jobs", {"pipeline_id": str(uuid.uuid4())}),
    ("scheduler", "/api/v1/schedule", {"job_id": str(uuid.uuid4()), "cron": "* * * * *"}),
    ("scheduler", "/api/v1/workers", {"type": "rust"}),
    ("workermanager", "/api/v1/execute", {"command": "true"}),
]

PUBLIC_PATHS = ["/health", "/openapi.json", "/swagger-ui"]
SERVICES = ["orchestrator", "scheduler", "workermanager"]


def bearer(service: str, token: str) -> ServiceClient:
    client = ServiceClient(service)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def assert_unauthenticated(response) -> None:
    assert response.status_code == 401, response.content
    assert response.json()["error"] in {"not_authenticated", "authentication_failed"}
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("service, path", LIST_ENDPOINTS)
def test_it_requires_credentials_to_list(make_client, service, path):
    assert_unauthenticated(make_client(service, anonymous=True).get(path))


@pytest.mark.parametrize("service, path, payload", WRITE_ENDPOINTS)
def test_it_requires_credentials_to_write(make_client, service, path, payload):
    assert_unauthenticated(make_client(service, anonymous=True).post(path, payload, format="json"))


def test_it_requires_credentials_for_detail_and_actions(make_client):
    job = JobFactory()
    worker = WorkerFactory()
    execution = ExecutionFactory(job=job)
    orch = make_client("orchestrator", anonymous=True)
    sched = make_client("scheduler", anonymous=True)
    wm = make_client("workermanager", anonymous=True)
    for response in (
        orch.get(f"/api/v1/pipelines/{job.pipeline_id}"),
        orch.delete(f"/api/v1/pipelines/{job.pipeline_id}"),
        orch.patch(f"/api/v1/jobs/{job.id}", {"name": "x"}, format="json"),
        orch.get(f"/api/v1/jobs/{job.id}/status"),
        sched.get(f"/api/v1/workers/{worker.id}"),
        sched.post(f"/api/v1/workers/{worker.id}/heartbeat"),
        wm.get(f"/api/v1/executions/{execution.id}"),
        wm.get(f"/api/v1/executions/{execution.id}/logs"),
        wm.post(f"/api/v1/executions/{execution.id}/cancel"),
        wm.post(f"/api/v1/executions/{execution.id}/retry"),
    ):
        assert_unauthenticated(response)
    execution.refresh_from_db()
    assert execution.status == "queued"
    assert Pipeline.objects.filter(pk=job.pipeline_id).exists()


@pytest.mark.parametrize("service, path", LIST_ENDPOINTS)
@pytest.mark.parametrize(
    "header",
    [
        "Bearer hodei_not-a-real-token",
        "Bearer ",
        "Bearer",
        "Bearer two parts",
        "bearer hodei_wrong",
        "Bearer \u00e9\u00e9",
    ],
)
def test_it_rejects_a_wrong_token(db, service, path, header):
    client = ServiceClient(service)
    client.credentials(HTTP_AUTHORIZATION=header.encode().decode("latin-1"))
    assert_unauthenticated(client.get(path))


@pytest.mark.parametrize("service, path", LIST_ENDPOINTS)
def test_it_rejects_a_revoked_token(db, service, path):
    user = UserFactory(is_superuser=True)
    token, raw = token_create(user=user)
    assert bearer(service, raw).get(path).status_code == 200
    token.revoke()
    assert_unauthenticated(bearer(service, raw).get(path))


def test_it_rejects_the_token_of_an_inactive_user(db):
    user = UserFactory(is_superuser=True, is_active=False)
    _, raw = token_create(user=user)
    assert_unauthenticated(bearer("orchestrator", raw).get("/api/v1/pipelines"))


def test_an_unknown_scheme_is_not_authenticated(db):
    user = UserFactory(is_superuser=True)
    _, raw = token_create(user=user)
    client = ServiceClient("orchestrator")
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    assert_unauthenticated(client.get("/api/v1/pipelines"))


def test_a_token_records_when_it_was_used(db):
    user = UserFactory(is_superuser=True)
    token, raw = token_create(user=user)
    assert token.last_used_at is None
    assert bearer("orchestrator", raw).get("/api/v1/pipelines").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("path", PUBLIC_PATHS)
def test_public_paths_need_no_credentials(make_client, service, path):
    response = make_client(service, anonymous=True).get(path)
    assert response.status_code == 200, response.content


# -- permissions -------------------------------------------------------------------


def test_a_viewer_can_read_but_not_write(make_client):
    pipeline = PipelineFactory()
    client = make_client("orchestrator", perms=("orchestrator.view_pipeline",))
    assert client.get("/api/v1/pipelines").status_code == 200
    assert client.get(f"/api/v1/pipelines/{pipeline.id}").status_code == 200
    for response in (
        client.post("/api/v1/pipelines", {"name": "p"}, format="json"),
        client.patch(f"/api/v1/pipelines/{pipeline.id}", {"name": "x"}, format="json"),
        client.delete(f"/api/v1/pipelines/{pipeline.id}"),
    ):
        assert response.status_code == 403, response.content
        assert response.json()["error"] == "permission_denied"
    pipeline.refresh_from_db()
    assert pipeline.name != "x"
    # view_pipeline says nothing about jobs
    assert client.get("/api/v1/jobs").status_code == 403


def test_a_user_without_permissions_cannot_read(make_client):
    for service, path in LIST_ENDPOINTS:
        response = make_client(service).get(path)
        assert response.status_code == 403, (service, path)
        assert response.json()["error"] == "permission_denied"


def test_each_write_needs_its_own_permission(make_client):
    client = make_client(
        "orchestrator", perms=("orchestrator.view_pipeline", "orchestrator.add_pipeline")
    )
    response = client.post("/api/v1/pipelines", {"name": "p"}, format="json")
    assert response.status_code == 201
    pipeline_id = response.json()["id"]
    assert client.patch(f"/api/v1/pipelines/{pipeline_id}", {}, format="json").status_code == 403
    assert client.delete(f"/api/v1/pipelines/{pipeline_id}").status_code == 403


def test_the_job_status_action_needs_view_permission(make_client):
    job = JobFactory()
    viewer = make_client("orchestrator", perms=("orchestrator.view_job",))
    assert viewer.get(f"/api/v1/jobs/{job.id}/status").status_code == 200
    assert make_client("orchestrator").get(f"/api/v1/jobs/{job.id}/status").status_code == 403


def test_a_heartbeat_needs_change_permission(make_client):
    worker = WorkerFactory()
    viewer = make_client("scheduler", perms=("workermanager.view_worker",))
    assert viewer.post(f"/api/v1/workers/{worker.id}/heartbeat").status_code == 403
    changer = make_client("scheduler", perms=("workermanager.change_worker",))
    assert changer.post(f"/api/v1/workers/{worker.id}/heartbeat").status_code == 200


def test_execution_actions_need_their_permissions(make_client):
    execution = ExecutionFactory()
    reader = make_client(
        "workermanager",
        perms=("workermanager.view_execution", "workermanager.view_executionlog"),
    )
    assert reader.get(f"/api/v1/executions/{execution.id}/logs").status_code == 200
    assert reader.post(f"/api/v1/executions/{execution.id}/cancel").status_code == 403
    assert reader.post("/api/v1/execute", {"command": "true"}, format="json").status_code == 403
    no_logs = make_client("workermanager", perms=("workermanager.view_execution",))
    assert no_logs.get(f"/api/v1/executions/{execution.id}").status_code == 200
    assert no_logs.get(f"/api/v1/executions/{execution.id}/logs").status_code == 403
    execution.refresh_from_db()
    assert execution.status == "queued"

    operator = make_client("workermanager", perms=("workermanager.change_execution",))
    assert operator.post(f"/api/v1/executions/{execution.id}/cancel").status_code == 200
    assert operator.post(f"/api/v1/executions/{execution.id}/retry").status_code == 403
    adder = make_client("workermanager", perms=("workermanager.add_execution",))
    assert adder.post(f"/api/v1/executions/{execution.id}/retry").status_code == 403
    runner = make_client("workermanager", perms=("workermanager.run_job",))
    assert runner.post(f"/api/v1/executions/{execution.id}/retry").status_code == 201


def test_group_permissions_govern_the_api(make_client):
    from django.contrib.auth.models import Group, Permission

    viewers = Group.objects.create(name="viewers")
    viewers.permissions.add(Permission.objects.get(codename="view_job"))
    user = UserFactory()
    user.groups.add(viewers)
    client = make_client("orchestrator", user=user)
    assert client.get("/api/v1/jobs").status_code == 200
    assert client.get("/api/v1/pipelines").status_code == 403


# -- tokens ------------------------------------------------------------------------


def test_createtoken_prints_only_a_working_token(db):
    out = StringIO()
    call_command("createtoken", "alice", "--superuser", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    raw = lines[0]
    assert raw.startswith("hodei_")
    assert len(raw) > 40
    response = bearer("orchestrator", raw).get("/api/v1/pipelines")
    assert response.status_code == 200
    token = ApiToken.objects.get()
    assert token.user.username == "alice"
    assert token.user.is_superuser and token.user.is_staff
    assert not token.user.has_usable_password()


def test_createtoken_without_superuser_gives_an_authenticated_but_unprivileged_user(db):
    out = StringIO()
    call_command("createtoken", "bob", stdout=out)
    raw = out.getvalue().strip()
    # authenticated (not 401) but without permissions (403)
    assert bearer("orchestrator", raw).get("/api/v1/pipelines").status_code == 403


def test_createtoken_adds_a_token_to_an_existing_user(db):
    user = UserFactory(username="carol")
    user.set_password("pw-123456")
    user.save()
    first, second = StringIO(), StringIO()
    call_command("createtoken", "carol", stdout=first)
    call_command("createtoken", "carol", stdout=second)
    assert first.getvalue() != second.getvalue()
    assert ApiToken.objects.filter(user=user).count() == 2
    user.refresh_from_db()
    assert user.check_password("pw-123456")


def test_tokens_are_stored_hashed(db):
    out = StringIO()
    call_command("createtoken", "dave", "--superuser", stdout=out)
    raw = out.getvalue().strip()
    token = ApiToken.objects.get()
    assert token.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.startswith(token.prefix)
    assert len(token.prefix) < len(raw) / 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apitoken")
        row = cursor.fetchone()
    assert not any(raw in str(value) for value in row)


def test_revoketoken_revokes(db):
    out = StringIO()
    call_command("createtoken", "erin", "--superuser", stdout=out)
    raw = out.getvalue().strip()
    call_command("revoketoken", raw, stdout=StringIO())
    assert ApiToken.objects.get().revoked_at is not None
    assert_unauthenticated(bearer("orchestrator", raw).get("/api/v1/pipelines"))


# -- sessions ----------------------------------------------------------------------


@pytest.mark.parametrize("service, path", LIST_ENDPOINTS)
def test_session_auth_serves_the_browsable_api(db, service, path):
    client = ServiceClient(service)
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    response = client.get(path, HTTP_ACCEPT="text/html")
    assert response.status_code == 200, response.content[:2000]
    assert response["Content-Type"].startswith("text/html")
    assert b"<html" in response.content.lower()


def test_the_browsable_api_needs_a_login(db):
    response = ServiceClient("orchestrator").get("/api/v1/pipelines", HTTP_ACCEPT="text/html")
    assert response.status_code == 401


def test_a_session_write_needs_the_csrf_token(db):
    client = ServiceClient("orchestrator", enforce_csrf_checks=True)
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    response = client.post("/api/v1/pipelines", {"name": "p"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert client.get("/api/v1/pipelines").status_code == 200


@pytest.mark.parametrize(
    ("role", "reads", "writes", "says"),
    [("viewer", 200, 403, "change nothing"), ("operator", 200, 201, "run and cancel")],
)
def test_createtoken_with_a_role_gives_that_roles_access_and_says_so(db, role, reads, writes, says):
    out, err = StringIO(), StringIO()
    call_command("createtoken", f"ci-{role}", "--role", role, stdout=out, stderr=err)
    raw = out.getvalue().strip()
    client = bearer("orchestrator", raw)
    assert client.get("/api/v1/pipelines").status_code == reads
    assert client.post("/api/v1/pipelines", {"name": "p"}, format="json").status_code == writes
    assert says in err.getvalue()


def test_createtoken_warns_that_a_token_without_role_can_do_nothing(db):
    err = StringIO()
    call_command("createtoken", "nobody-in-particular", stdout=StringIO(), stderr=err)
    assert "403" in err.getvalue() and "--role" in err.getvalue()


def test_createtoken_help_says_which_name_is_which(capsys):
    with pytest.raises(SystemExit):
        call_command("createtoken", "--help")
    text = capsys.readouterr().out
    assert "The user the token acts as" in text
    assert "A label for the token itself" in text
