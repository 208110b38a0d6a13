"""Hodei's two roles (groups made by a migration), honoured by the admin and the API."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from accounts.models import token_create
from accounts.roles import OPERATOR_ACTIONS, OPERATORS, VIEWERS
from orchestrator.models import Pipeline
from pipelines.services import pipeline_run_start
from scheduler import services as scheduler_services
from tests.conftest import client_for
from tests.factories import (
    ExecutionFactory,
    JobFactory,
    ManagedWorkerFactory,
    PoolScalingFactory,
    ScheduleFactory,
    UserFactory,
    WorkerFactory,
    admin_form_data,
    logged_in,
    messages_of,
    role_user,
)
from workermanager.choices import ExecutionStatus, Trigger
from workermanager.credentials import registration_token_create
from workermanager.models import Execution

pytestmark = pytest.mark.django_db

MODELS = [
    ("orchestrator", "pipeline"),
    ("orchestrator", "job"),
    ("scheduler", "schedule"),
    ("workermanager", "worker"),
    ("workermanager", "execution"),
    ("workermanager", "managedworker"),
    ("workermanager", "registrationtoken"),
    ("workermanager", "workerpool"),
    ("pipelines", "pipelinerun"),
]
# What each changelist's actions are, for an operator.
ACTIONS = {
    "pipeline": {"archive_selected", "delete_selected"},
    "job": {"delete_selected"},
    "schedule": {"enable_selected", "pause_selected", "run_now", "delete_selected"},
    "worker": {"drain_selected", "undrain_selected", "revoke_credential_selected"},
    "execution": {"cancel_selected", "retry_selected"},
    "managedworker": {"stop_selected"},
    "registrationtoken": {"revoke_selected"},
    "workerpool": {"delete_selected"},
    "pipelinerun": set(),
}


@pytest.fixture
def objects():
    job = JobFactory(secret_env={"K": "v"})
    return {
        "pipeline": job.pipeline,
        "job": job,
        "schedule": ScheduleFactory(job=job),
        "worker": WorkerFactory(),
        "execution": ExecutionFactory(job=job),
        "managedworker": ManagedWorkerFactory(),
        "registrationtoken": registration_token_create(name="ci")[0],
        "workerpool": PoolScalingFactory().pool,
        "pipelinerun": pipeline_run_start(pipeline=job.pipeline),
    }


def perms(group_name: str) -> set[str]:
    group = Group.objects.get(name=group_name)
    return {
        f"{app}.{codename}"
        for app, codename in group.permissions.values_list("content_type__app_label", "codename")
    }


def test_migrate_creates_both_groups():
    expected_operator = {
        f"{app}.{action}_{model}"
        for (app, model), actions in OPERATOR_ACTIONS.items()
        for action in actions
        if action in ("add", "change", "delete", "view")
    }
    # Operators run jobs and commands of their own; viewers do neither (docs/security.md).
    expected_operator |= {"workermanager.run_job", "workermanager.run_command"}
    assert perms(OPERATORS) == expected_operator
    assert perms(VIEWERS) == {f"{app}.view_{model}" for app, model in OPERATOR_ACTIONS}
    assert all(p.split(".")[1].startswith("view_") for p in perms(VIEWERS))


# -- the admin -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", [OPERATORS, VIEWERS])
@pytest.mark.parametrize(("app", "model"), MODELS)
def test_changelists_and_change_pages_render_for_both_roles(objects, role, app, model):
    client = logged_in(role_user(role))
    changelist = client.get(reverse(f"admin:{app}_{model}_changelist"))
    assert changelist.status_code == 200
    assert len(changelist.context["cl"].result_list) >= 1
    change = client.get(reverse(f"admin:{app}_{model}_change", args=[objects[model].pk]))
    assert change.status_code == 200
    actions = set(changelist.context["cl"].model_admin.get_actions(changelist.wsgi_request))
    if role == VIEWERS:
        assert actions == set()
        assert 'name="action"' not in changelist.content.decode()
        assert 'name="_save"' not in change.content.decode()
    else:
        assert actions == ACTIONS[model]


@pytest.mark.parametrize(("app", "model"), MODELS)
def test_viewers_get_403_on_add_and_delete_pages(objects, app, model):
    client = logged_in(role_user(VIEWERS))
    assert client.get(reverse(f"admin:{app}_{model}_add")).status_code == 403
    delete = reverse(f"admin:{app}_{model}_delete", args=[objects[model].pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert type(objects[model]).objects.filter(pk=objects[model].pk).exists()


def test_viewers_posting_a_change_alter_nothing(objects):
    client = logged_in(role_user(VIEWERS))
    pipeline, job = objects["pipeline"], objects["job"]
    name = pipeline.name
    url = reverse("admin:orchestrator_pipeline_change", args=[pipeline.pk])
    response = client.post(url, {"name": "hijacked", "status": "archived"})
    assert response.status_code == 403
    url = reverse("admin:orchestrator_job_change", args=[job.pk])
    response = client.post(url, {"command": "rm -rf /", "pipeline": str(pipeline.pk)})
    assert response.status_code == 403
    pipeline.refresh_from_db()
    job.refresh_from_db()
    assert (pipeline.name, pipeline.status) == (name, "active")
    assert job.command == "echo hello"


@pytest.mark.parametrize(("app", "model"), MODELS)
def test_viewers_posting_any_action_change_nothing(objects, app, model):
    client = logged_in(role_user(VIEWERS))
    before = {
        name: list(type(obj).objects.filter(pk=obj.pk).values()) for name, obj in objects.items()
    }
    executions = Execution.objects.count()
    for name in sorted(ACTIONS[model]):
        data = {"action": name, "_selected_action": [str(objects[model].pk)], "post": "yes"}
        response = client.post(reverse(f"admin:{app}_{model}_changelist"), data, follow=True)
        assert response.status_code == 200
    after = {
        name: list(type(obj).objects.filter(pk=obj.pk).values()) for name, obj in objects.items()
    }
    assert after == before
    assert Execution.objects.count() == executions


def test_viewers_see_the_dashboard_and_every_model_on_the_index(objects):
    html = logged_in(role_user(VIEWERS)).get("/admin/").content.decode()
    assert "hodei-dashboard" in html
    for app, model in MODELS:
        assert reverse(f"admin:{app}_{model}_changelist") in html


def test_operators_add_a_pipeline_run_a_job_and_cancel_an_execution():
    client = logged_in(role_user(OPERATORS))
    page = client.get("/admin/orchestrator/pipeline/add/")
    data = admin_form_data(
        page, name="ops", **{"jobs-0-name": "hello", "jobs-0-command": "echo hi"}
    )
    assert client.post("/admin/orchestrator/pipeline/add/", data).status_code == 302
    job = Pipeline.objects.get(name="ops").jobs.get()

    response = client.post(f"/admin/workermanager/execution/run-job/{job.pk}/", follow=True)
    execution = Execution.objects.get(job=job)
    assert execution.trigger == Trigger.ADMIN
    assert response.request["PATH_INFO"] == f"/admin/workermanager/execution/{execution.pk}/change/"

    response = client.post(
        "/admin/workermanager/execution/",
        {"action": "cancel_selected", "_selected_action": [str(execution.pk)]},
        follow=True,
    )
    assert "1 execution(s) cancelled." in messages_of(response)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.CANCELLED


def test_staff_without_a_role_see_nothing():
    client = logged_in(UserFactory(is_staff=True))
    for app, model in MODELS:
        assert client.get(reverse(f"admin:{app}_{model}_changelist")).status_code == 403


# -- the API -------------------------------------------------------------------------------


def test_a_viewer_token_reads_but_cannot_write():
    viewer = role_user(VIEWERS)
    job = JobFactory()
    execution = ExecutionFactory(job=job)
    schedule = scheduler_services.schedule_create(job=job, cron="0 3 * * *")
    worker = WorkerFactory()
    orch, sched, wm = (
        client_for(s, viewer) for s in ("orchestrator", "scheduler", "workermanager")
    )

    for client, url in [
        (orch, "/api/v1/pipelines"),
        (orch, "/api/v1/jobs"),
        (sched, "/api/v1/scheduled"),
        (sched, "/api/v1/workers"),
        (wm, "/api/v1/executions"),
        (wm, "/api/v1/workers"),
        (wm, f"/api/v1/executions/{execution.pk}/logs"),
    ]:
        assert client.get(url).status_code == 200, url

    for client, url, body in [
        (orch, "/api/v1/pipelines", {"name": "nope"}),
        (orch, "/api/v1/jobs", {"pipeline_id": str(job.pipeline_id), "command": "x"}),
        (sched, "/api/v1/schedule", {"job_id": str(job.pk), "cron": "* * * * *"}),
        (sched, f"/api/v1/scheduled/{schedule.pk}/run", {}),
        (sched, f"/api/v1/workers/{worker.pk}/heartbeat", {}),
        (wm, "/api/v1/execute", {"job_id": str(job.pk)}),
        (wm, f"/api/v1/executions/{execution.pk}/cancel", {}),
        (wm, "/api/v1/workers", {"type": "default"}),
    ]:
        assert client.post(url, body, format="json").status_code == 403, url
    response = sched.patch(f"/api/v1/scheduled/{schedule.pk}", {"enabled": False}, format="json")
    assert response.status_code == 403

    assert Pipeline.objects.count() == 1
    assert Execution.objects.count() == 1
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.QUEUED


def test_an_operator_token_writes():
    operator = role_user(OPERATORS)
    orch = client_for("orchestrator", operator)
    wm = client_for("workermanager", operator)
    sched = client_for("scheduler", operator)
    response = orch.post("/api/v1/pipelines", {"name": "ops"}, format="json")
    assert response.status_code == 201, response.content
    pipeline_id = response.json()["id"]
    response = orch.post(
        "/api/v1/jobs", {"pipeline_id": pipeline_id, "command": "echo hi"}, format="json"
    )
    assert response.status_code == 201, response.content
    job_id = response.json()["id"]
    response = sched.post(
        "/api/v1/schedule", {"job_id": job_id, "cron": "0 3 * * *"}, format="json"
    )
    assert response.status_code == 201, response.content
    response = wm.post("/api/v1/execute", {"job_id": job_id}, format="json")
    assert response.status_code == 201, response.content
    execution_id = response.json()["id"]
    response = wm.post(f"/api/v1/executions/{execution_id}/cancel")
    assert response.status_code == 200, response.content
    assert Execution.objects.get(pk=execution_id).status == ExecutionStatus.CANCELLED


def test_a_token_without_a_role_reads_nothing():
    nobody = UserFactory()
    assert client_for("orchestrator", nobody).get("/api/v1/pipelines").status_code == 403
    assert client_for("workermanager", nobody).get("/api/v1/executions").status_code == 403


# -- API tokens in the admin (superusers only: neither role holds token permissions) -------

TOKENS = "/admin/accounts/apitoken/"


def test_tokens_are_for_superusers_only(admin_user):
    token, raw = token_create(user=admin_user, name="ci")
    for role in (OPERATORS, VIEWERS):
        client = logged_in(role_user(role))
        assert client.get(TOKENS).status_code == 403
    root = logged_in(admin_user)
    page = root.get(TOKENS)
    assert page.status_code == 200
    html = page.content.decode() + root.get(f"{TOKENS}{token.pk}/change/").content.decode()
    assert token.prefix in html
    assert raw not in html and token.key_hash not in html
    assert root.get(TOKENS + "add/").status_code == 403  # created once, by the command


def test_revoke_action_and_revoking_twice(admin_user):
    live, _ = token_create(user=admin_user)
    gone, _ = token_create(user=admin_user)
    gone.revoke()
    revoked_at = gone.revoked_at
    root = logged_in(admin_user)
    data = {"action": "revoke", "_selected_action": [str(live.pk), str(gone.pk)]}
    messages = messages_of(root.post(TOKENS, data, follow=True))
    assert "Revoked 1 token(s)." in messages, messages
    assert any(gone.prefix in m and "already revoked" in m for m in messages), messages
    live.refresh_from_db()
    gone.refresh_from_db()
    assert live.revoked_at is not None
    assert gone.revoked_at == revoked_at


def test_a_revoked_token_cannot_be_reinstated_by_editing_it(admin_user):
    token, raw = token_create(user=admin_user, name="old")
    token.revoke()
    root = logged_in(admin_user)
    url = f"{TOKENS}{token.pk}/change/"
    page = root.get(url)
    root.post(url, admin_form_data(page, name="renamed", revoked_at_0="", revoked_at_1=""))
    token.refresh_from_db()
    assert token.revoked_at is not None
    api = client_for("orchestrator")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/api/v1/pipelines").status_code == 401


def test_the_task_queue_internals_are_for_superusers_only_and_read_only():
    operator = logged_in(role_user(OPERATORS))
    index = operator.get("/admin/").content.decode()
    assert "Internals" not in index
    assert operator.get("/admin/django_q/schedule/").status_code == 403

    root = logged_in(UserFactory(is_superuser=True, is_staff=True))
    index = root.get("/admin/").content.decode()
    assert "Internals: task queue" in index
    page = root.get("/admin/django_q/schedule/")
    assert page.status_code == 200
    assert root.get("/admin/django_q/schedule/add/").status_code == 403
    assert 'name="action"' not in page.content.decode()
