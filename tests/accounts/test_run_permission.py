"""Who may cause a command to run (the run permission), and what an overridden command
receives: each way around it that was found, closed, through the API and the admin."""

import pytest
from django.contrib.auth.models import Permission

from accounts.roles import OPERATORS, VIEWERS
from scheduler import services as scheduler_services
from tests.agent.conftest import drive, log_text
from tests.conftest import client_for
from tests.factories import (
    ExecutionFactory,
    JobFactory,
    ScheduleFactory,
    UserFactory,
    logged_in,
    messages_of,
    role_user,
)
from workermanager.models import Execution

pytestmark = pytest.mark.django_db


def user_with(*perms):
    user = UserFactory(is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    return user


SCHEDULE_ONLY = (
    "scheduler.view_schedule",
    "scheduler.add_schedule",
    "scheduler.change_schedule",
    "orchestrator.view_job",
)


def test_a_schedule_only_user_cannot_cause_a_command_to_run_through_the_api():
    user = user_with(*SCHEDULE_ONLY)
    api = client_for("scheduler", user)
    schedule = ScheduleFactory(cron="0 3 * * *")
    other_job = JobFactory(command="echo other")

    # 1. run now
    assert api.post(f"/api/v1/scheduled/{schedule.id}/run").status_code == 403
    # 2. a one-off schedule two seconds ahead
    body = {"job_id": str(other_job.id), "schedule_time": "2031-01-01T00:00:00Z"}
    assert api.post("/api/v1/schedule", body, format="json").status_code == 403
    # 3. re-pointing a schedule at another job
    patched = api.patch(
        f"/api/v1/scheduled/{schedule.id}", {"job_id": str(other_job.id)}, format="json"
    )
    assert patched.status_code == 403
    schedule.refresh_from_db()
    assert schedule.job_id != other_job.id
    assert not Execution.objects.exists()
    # What does not run anything stays allowed: a paused schedule, a new name.
    paused = {**body, "enabled": False}
    assert api.post("/api/v1/schedule", paused, format="json").status_code == 201
    renamed = api.patch(f"/api/v1/scheduled/{schedule.id}", {"name": "x"}, format="json")
    assert renamed.status_code == 200


def test_enabling_a_paused_schedule_needs_the_run_permission():
    schedule = ScheduleFactory(cron="0 3 * * *", status="paused")
    api = client_for("scheduler", user_with(*SCHEDULE_ONLY))
    response = api.patch(f"/api/v1/scheduled/{schedule.id}", {"enabled": True}, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"
    runner = client_for("scheduler", user_with(*SCHEDULE_ONLY, "workermanager.run_job"))
    ok = runner.patch(f"/api/v1/scheduled/{schedule.id}", {"enabled": True}, format="json")
    assert ok.status_code == 200


def test_a_change_execution_user_cannot_retry_through_the_admin():
    execution = ExecutionFactory(status="failed")
    admin = logged_in(user_with("workermanager.view_execution", "workermanager.change_execution"))
    response = admin.post(
        "/admin/workermanager/execution/",
        {"action": "retry_selected", "_selected_action": [str(execution.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert not Execution.objects.filter(retry_of=execution).exists()
    operate = admin.post(f"/admin/workermanager/execution/{execution.pk}/operate/retry/")
    assert operate.status_code == 404
    assert not Execution.objects.filter(retry_of=execution).exists()


def test_a_schedule_only_user_cannot_run_through_the_admin():
    schedule = scheduler_services.schedule_create(job=JobFactory(), cron="0 3 * * *")
    admin = logged_in(user_with(*SCHEDULE_ONLY))
    assert admin.post(f"/admin/scheduler/schedule/{schedule.pk}/run/").status_code == 404
    admin.post(
        "/admin/scheduler/schedule/",
        {"action": "run_now", "_selected_action": [str(schedule.pk)]},
        follow=True,
    )
    job = JobFactory()
    page = admin.get("/admin/scheduler/schedule/add/")
    from tests.factories import admin_form_data

    data = admin_form_data(page, job=str(job.pk), cron="*/5 * * * *", timezone="UTC")
    response = admin.post("/admin/scheduler/schedule/add/", data)
    assert response.status_code == 200  # the form, with the reason
    assert "run permission" in str(response.context["adminform"].form.non_field_errors())
    assert not Execution.objects.exists()


def test_viewers_and_operators_by_role():
    viewer, operator = role_user(VIEWERS), role_user(OPERATORS)
    job = JobFactory(command="echo hi")
    assert (
        client_for("workermanager", viewer)
        .post("/api/v1/execute", {"job_id": str(job.id)}, format="json")
        .status_code
        == 403
    )
    assert (
        client_for("workermanager", operator)
        .post("/api/v1/execute", {"job_id": str(job.id)}, format="json")
        .status_code
        == 201
    )


def test_an_overridden_command_needs_run_command_and_gets_no_secrets_unless_job_changer(
    make_agent,
):
    job = JobFactory(command="echo job", secret_env={"TOKEN": "s3cret-value-42"})
    override = {"job_id": str(job.id), "command": 'echo "got ${TOKEN:-nothing}"'}

    only_run = client_for("workermanager", user_with("workermanager.run_job"))
    assert only_run.post("/api/v1/execute", override, format="json").status_code == 403
    # The job's own command is fine with run alone.
    assert (
        only_run.post("/api/v1/execute", {"job_id": str(job.id)}, format="json").status_code == 201
    )

    runner = client_for(
        "workermanager", user_with("workermanager.run_job", "workermanager.run_command")
    )
    response = runner.post("/api/v1/execute", override, format="json")
    assert response.status_code == 201
    no_secrets = Execution.objects.get(pk=response.json()["id"])
    assert (no_secrets.own_command, no_secrets.with_secrets) == (True, False)

    changer = client_for(
        "workermanager",
        user_with("workermanager.run_job", "workermanager.run_command", "orchestrator.change_job"),
    )
    with_secrets = Execution.objects.get(
        pk=changer.post("/api/v1/execute", override, format="json").json()["id"]
    )
    assert with_secrets.with_secrets

    agent = make_agent()
    assert log_text(drive(agent, no_secrets)) == "got nothing\n"
    assert log_text(drive(agent, with_secrets)) == "got ********\n"  # received, and masked
    # A retry keeps what the first attempt was allowed.
    retry = runner.post(f"/api/v1/executions/{no_secrets.id}/retry")
    assert retry.status_code == 201
    assert not Execution.objects.get(pk=retry.json()["id"]).with_secrets


def test_admin_messages_say_why_a_retry_is_refused():
    execution = ExecutionFactory(status="failed", own_command=True)
    admin = logged_in(user_with("workermanager.view_execution", "workermanager.run_job"))
    response = admin.post(
        "/admin/workermanager/execution/",
        {"action": "retry_selected", "_selected_action": [str(execution.pk)]},
        follow=True,
    )
    assert any("run_command" in m for m in messages_of(response))
