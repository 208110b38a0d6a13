"""The admin of pipelines and jobs, driven through Django's test client."""

import pytest

from orchestrator.choices import PipelineStatus
from orchestrator.models import Job, Pipeline
from tests.factories import (
    ExecutionFactory,
    JobFactory,
    PipelineFactory,
    ScheduleFactory,
    action,
    admin_form_data,
    change_url,
    messages_of,
    stored_secrets,
)
from workermanager.choices import ExecutionStatus, Trigger
from workermanager.models import Execution

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-value-that-must-never-leak"
PIPELINES = "/admin/orchestrator/pipeline/"
JOBS = "/admin/orchestrator/job/"


# -- pipelines -------------------------------------------------------------------------


def test_pipeline_changelist_lists_and_searches(operator):
    PipelineFactory(name="build-backend", description="compiles")
    PipelineFactory(name="deploy", description="ships the backend")
    PipelineFactory(name="docs")
    response = operator.get(PIPELINES)
    assert response.status_code == 200
    assert {p.name for p in response.context["cl"].result_list} == {
        "build-backend",
        "deploy",
        "docs",
    }
    found = operator.get(PIPELINES, {"q": "backend"}).context["cl"].result_list
    assert {p.name for p in found} == {"build-backend", "deploy"}
    archived = PipelineFactory(name="old", status=PipelineStatus.ARCHIVED)
    filtered = operator.get(PIPELINES, {"status__exact": "archived"}).context["cl"].result_list
    assert list(filtered) == [archived]


def test_pipeline_changelist_counts_jobs_without_a_query_per_row(
    operator, django_assert_max_num_queries
):
    for i in range(30):
        pipeline = PipelineFactory(name=f"p{i:02}")
        JobFactory.create_batch(i % 3, pipeline=pipeline)
    operator.get(PIPELINES)  # warm up (session, content types)
    with django_assert_max_num_queries(12):
        response = operator.get(PIPELINES)
    assert response.status_code == 200
    counts = {p.name: p for p in response.context["cl"].result_list}
    admin = response.context["cl"].model_admin
    assert admin.job_count(counts["p04"]) == 1
    assert admin.job_count(counts["p05"]) == 2
    assert admin.job_count(counts["p06"]) == 0


def test_operator_creates_a_pipeline_with_its_jobs_inline(operator):
    page = operator.get(PIPELINES + "add/")
    assert page.status_code == 200
    data = admin_form_data(
        page,
        name="release",
        description="Build and ship",
        **{"jobs-0-name": "build", "jobs-0-command": "make build", "jobs-0-timeout_seconds": "60"},
    )
    response = operator.post(PIPELINES + "add/", data, follow=True)
    assert response.status_code == 200
    assert not response.context.get("errors"), response.context.get("errors")
    pipeline = Pipeline.objects.get(name="release")
    assert pipeline.description == "Build and ship"
    job = pipeline.jobs.get()
    assert (job.name, job.command, job.timeout_seconds) == ("build", "make build", 60)


def test_operator_edits_a_pipeline_and_its_jobs_inline(operator):
    pipeline = PipelineFactory(name="before")
    job = JobFactory(pipeline=pipeline, command="echo old")
    page = operator.get(change_url(pipeline))
    assert page.status_code == 200
    assert "echo old" in page.content.decode()
    data = admin_form_data(page, name="after", **{"jobs-0-command": "echo new"})
    response = operator.post(change_url(pipeline), data, follow=True)
    assert response.status_code == 200
    before = pipeline.updated_at, job.updated_at
    pipeline.refresh_from_db()
    job.refresh_from_db()
    assert pipeline.name == "after"
    assert job.command == "echo new"
    # Through the services, as the API: both stamp updated_at.
    assert pipeline.updated_at > before[0]
    assert job.updated_at > before[1]


def test_operator_adds_and_removes_jobs_inline(operator):
    pipeline = PipelineFactory()
    old = JobFactory(pipeline=pipeline, name="old")
    page = operator.get(change_url(pipeline))
    data = admin_form_data(page, **{"jobs-0-DELETE": "on"})
    data.update(
        {
            "jobs-TOTAL_FORMS": "2",
            "jobs-1-name": "new",
            "jobs-1-command": "echo new",
            "jobs-1-type": "sh",
            "jobs-1-max_retries": "0",
            "jobs-1-pipeline": str(pipeline.pk),
        }
    )
    response = operator.post(change_url(pipeline), data)
    assert response.status_code == 302
    assert not Job.objects.filter(pk=old.pk).exists()
    assert [(j.name, j.type) for j in pipeline.jobs.all()] == [("new", "sh")]


def test_archive_action_archives_through_the_service(operator):
    keep = PipelineFactory()
    chosen = PipelineFactory.create_batch(2)
    before = {p.pk: p.updated_at for p in chosen}
    response = action(operator, PIPELINES, "archive_selected", chosen)
    assert response.status_code == 200
    assert "2 pipeline(s) archived." in messages_of(response)
    for pipeline in chosen:
        pipeline.refresh_from_db()
        assert pipeline.status == PipelineStatus.ARCHIVED
        assert pipeline.updated_at > before[pipeline.pk]
    keep.refresh_from_db()
    assert keep.status == PipelineStatus.ACTIVE


def test_viewer_cannot_archive(viewer):
    pipeline = PipelineFactory()
    page = viewer.get(PIPELINES)
    assert page.status_code == 200
    assert "archive_selected" not in page.content.decode()
    response = action(viewer, PIPELINES, "archive_selected", [pipeline])
    assert response.status_code == 200
    pipeline.refresh_from_db()
    assert pipeline.status == PipelineStatus.ACTIVE


# -- jobs --------------------------------------------------------------------------------


def test_job_changelist_filters_by_pipeline_type_and_last_status(operator):
    a, b = PipelineFactory(name="a"), PipelineFactory(name="b")
    bash = JobFactory(pipeline=a, name="bash-job")
    python = JobFactory(pipeline=a, name="python-job", type="python")
    other = JobFactory(pipeline=b, name="other-job", status="failed")

    def listed(**params):
        response = operator.get(JOBS, params)
        assert response.status_code == 200
        return set(response.context["cl"].result_list)

    assert listed() == {bash, python, other}
    assert listed(pipeline__id__exact=str(a.pk)) == {bash, python}
    assert listed(type__exact="python") == {python}
    assert listed(status__exact="failed") == {other}
    assert listed(q="other") == {other}


def test_operator_edits_command_env_timeout_and_retry_policy(operator):
    job = JobFactory(secret_env={"TOKEN": SECRET})
    page = operator.get(change_url(job))
    data = admin_form_data(
        page,
        command="echo changed",
        env='{"MODE": "fast"}',
        timeout_seconds="120",
        max_retries="3",
        retry_delay_seconds="5",
        retry_backoff="1.5",
        max_lost_retries="2",
    )
    response = operator.post(change_url(job), data, follow=True)
    assert response.status_code == 200
    assert not response.context.get("errors")
    job.refresh_from_db()
    assert job.command == "echo changed"
    assert job.env == {"MODE": "fast"}
    assert (job.timeout_seconds, job.max_retries, job.retry_delay_seconds) == (120, 3, 5)
    assert (job.retry_backoff, job.max_lost_retries) == (1.5, 2)
    assert stored_secrets(job) == {"TOKEN": SECRET}  # shown masked, sent back: kept


def test_job_form_rejects_out_of_range_retry_policy(operator):
    job = JobFactory()
    page = operator.get(change_url(job))
    data = admin_form_data(page, retry_backoff="50", timeout_seconds="0")
    response = operator.post(change_url(job), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "retry_backoff" in errors and "timeout_seconds" in errors
    job.refresh_from_db()
    assert job.retry_backoff == 2.0 and job.timeout_seconds is None


def test_secret_env_values_never_appear_in_the_admin(operator):
    job = JobFactory(secret_env={"DB_PASSWORD": SECRET}, env={"PLAIN": "visible"})
    for url in (change_url(job), change_url(job.pipeline), JOBS, PIPELINES):
        response = operator.get(url)
        assert response.status_code == 200
        assert SECRET not in response.content.decode(), url
    page = operator.get(change_url(job)).content.decode()
    assert "DB_PASSWORD=********" in page
    assert "visible" in page


def test_job_dependencies_across_pipelines_are_a_form_error(operator):
    job = JobFactory()
    elsewhere = JobFactory()  # another pipeline
    page = operator.get(change_url(job))
    data = admin_form_data(page, depends_on=[str(elsewhere.pk)])
    response = operator.post(change_url(job), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "same pipeline" in str(errors["depends_on"])
    assert not job.depends_on.exists()


def test_job_dependencies_forming_a_cycle_are_a_form_error(operator):
    pipeline = PipelineFactory()
    a = JobFactory(pipeline=pipeline, name="a")
    b = JobFactory(pipeline=pipeline, name="b")
    c = JobFactory(pipeline=pipeline, name="c")
    b.depends_on.set([a])
    c.depends_on.set([b])
    page = operator.get(change_url(a))
    response = operator.post(change_url(a), admin_form_data(page, depends_on=[str(c.pk)]))
    assert response.status_code == 200
    assert "cycle" in str(response.context["adminform"].form.errors["depends_on"])
    assert not a.depends_on.exists()

    itself = operator.post(change_url(a), admin_form_data(page, depends_on=[str(a.pk)]))
    assert "itself" in str(itself.context["adminform"].form.errors["depends_on"])


def test_valid_job_dependencies_are_saved_through_the_service(operator):
    pipeline = PipelineFactory()
    a = JobFactory(pipeline=pipeline, name="a")
    b = JobFactory(pipeline=pipeline, name="b")
    page = operator.get(change_url(b))
    response = operator.post(change_url(b), admin_form_data(page, depends_on=[str(a.pk)]))
    assert response.status_code == 302
    assert list(b.depends_on.all()) == [a]


def test_moving_a_job_that_others_depend_on_to_another_pipeline_is_a_form_error(operator):
    pipeline = PipelineFactory()
    upstream = JobFactory(pipeline=pipeline, name="upstream")
    downstream = JobFactory(pipeline=pipeline, name="downstream")
    downstream.depends_on.set([upstream])
    target = PipelineFactory()
    page = operator.get(change_url(upstream))
    response = operator.post(change_url(upstream), admin_form_data(page, pipeline=str(target.pk)))
    assert response.status_code == 200
    assert "pipeline" in response.context["adminform"].form.errors
    upstream.refresh_from_db()
    assert upstream.pipeline_id == pipeline.pk


def test_job_change_page_links_to_its_executions(operator):
    job = JobFactory()
    page = operator.get(change_url(job)).content.decode()
    assert f"/admin/workermanager/execution/?job__id__exact={job.pk}" in page


def run_now_url(job) -> str:
    return f"/admin/workermanager/execution/run-job/{job.pk}/"


def test_run_now_on_the_job_page_queues_an_execution_and_opens_it(operator):
    job = JobFactory(command="echo run", env={"A": "1"}, timeout_seconds=30)
    page = operator.get(change_url(job)).content.decode()
    assert 'id="hodei-run-now"' in page and run_now_url(job) in page
    response = operator.post(run_now_url(job))
    execution = Execution.objects.get(job=job)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/workermanager/execution/{execution.pk}/change/"
    assert execution.trigger == Trigger.ADMIN
    assert execution.status == ExecutionStatus.QUEUED
    assert (execution.command, execution.env, execution.timeout_seconds) == (
        "echo run",
        {"A": "1"},
        30,
    )
    job.refresh_from_db()
    assert job.status == "queued"


def test_run_now_needs_the_run_permission(viewer):
    job = JobFactory()
    assert "hodei-run-now" not in viewer.get(change_url(job)).content.decode()
    assert viewer.post(run_now_url(job)).status_code == 404
    assert viewer.get(run_now_url(job)).status_code == 404
    assert not Execution.objects.exists()


def test_the_job_page_lists_recent_executions_and_schedules(operator):
    job = JobFactory()
    executions = [ExecutionFactory(job=job) for _ in range(12)]
    schedule = ScheduleFactory(job=job, cron="0 3 * * *")
    page = operator.get(change_url(job)).content.decode()
    recent = page[page.index('id="hodei-recent-executions"') :]
    shown = [e for e in executions if f"/execution/{e.pk}/change/" in recent]
    assert shown == executions[2:]  # the newest ten
    assert f"/admin/scheduler/schedule/{schedule.pk}/change/" in page
    assert "0 3 * * *" in page


def test_job_add_page(operator, viewer):
    pipeline = PipelineFactory()
    page = operator.get(JOBS + "add/")
    assert page.status_code == 200
    data = admin_form_data(page, pipeline=str(pipeline.pk), name="new", command="true")
    response = operator.post(JOBS + "add/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Job.objects.get(name="new").pipeline == pipeline
    assert viewer.get(JOBS + "add/").status_code == 403


def test_deleting_a_job_in_the_admin_lists_what_goes_and_keeps_its_history(operator):
    schedule = ScheduleFactory(cron="0 3 * * *")
    job = schedule.job
    execution = ExecutionFactory(job=job)
    page = operator.get(change_url(job).replace("/change/", "/delete/"))
    html = page.content.decode()
    assert page.status_code == 200
    assert "History is kept" in html and str(schedule) in html
    response = operator.post(change_url(job).replace("/change/", "/delete/"), {"post": "yes"})
    assert response.status_code == 302
    assert not Job.objects.filter(pk=job.pk).exists()
    execution.refresh_from_db()
    assert execution.job_id is None


def test_every_job_setting_is_on_the_job_page():
    # Declared once (JOB_SETTINGS): a field missing from the page could not be set.
    from orchestrator.admin import JobAdmin
    from orchestrator.models import JOB_SETTINGS

    shown = {f for _, options in JobAdmin.fieldsets for f in options["fields"]}
    assert set(JOB_SETTINGS) - {"secret_env"} <= shown
    assert "secrets" in shown  # secret_env, write-only
