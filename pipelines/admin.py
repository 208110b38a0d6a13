"""The admin of pipeline runs, and the run parts of the pipeline's page.

The pipeline's page belongs to the orchestrator (orchestrator/admin.py), a lower layer
that knows nothing of runs. This app extends it the way console/admin.py extends
django-q2's pages: it registers a subclass of the orchestrator's PipelineAdmin in its
place, which colours the graph by the latest run, lists recent runs and adds "Run
pipeline". Buttons call the same services as the API; the permission rules are the
API's (cancel: ``change``; retry and run: the run permission)."""

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from accounts import permissions
from hodei.admin_tools import (
    CappedCountPaginator,
    link_column,
    object_urls,
    time_column,
    uuid_or_404,
)
from hodei.exceptions import HodeiError
from hodei.lib import dag_svg
from hodei.lib.lookup import id_search
from hodei.templatetags.hodei import hodei_ms, moment, status_pill
from orchestrator import admin as orchestrator_admin
from orchestrator.models import Pipeline
from pipelines import services
from pipelines.choices import ACTIVE_RUN, RETRYABLE_RUN, RunTrigger
from pipelines.models import PipelineRun


def run_graph(run: PipelineRun, jobs: list[dict]) -> SafeString:
    """The run's DAG (the copy of the dependencies it started with), each job coloured by
    its state and linking to its latest attempt, where its log is."""
    nodes = []
    for row in jobs:
        execution = row["execution"]
        detail = row["state"]
        title = f"{row['name']}: {row['state']}"
        if execution is not None:
            if execution.status != row["state"]:  # timed out, lost, expired: say which
                detail = execution.status.replace("_", " ")
            if execution.duration_ms is not None:
                detail += f" · {hodei_ms(execution.duration_ms)}"
            if execution.attempt > 1:
                detail += f" · try {execution.attempt}"
            title += f", attempt {execution.attempt}"
            if execution.error:
                title += f"\n{execution.error}"
        nodes.append(
            dag_svg.Node(
                id=row["job_id"],
                label=row["name"],
                state=row["state"],
                url=reverse("admin:workermanager_execution_change", args=[execution.pk])
                if execution is not None
                else "",
                detail=detail,
                title=title,
            )
        )
    edges = [(need, row["job_id"]) for row in jobs for need in row["needs"]]
    return dag_svg.render(nodes, edges, label=f"Jobs of {run}")


@admin.register(PipelineRun)
class PipelineRunAdmin(permissions.OperatePermissionMixin, admin.ModelAdmin):
    """Runs are history, as executions are: nobody edits one. Operators cancel and retry
    them from their page; viewers watch."""

    list_display = (
        "short_id",
        "status_badge",
        "pipeline_link",
        "trigger",
        "created",
        "started",
        "duration",
    )
    list_select_related = ("pipeline",)
    # Each filter has its index (status, trigger, pipeline; then -id).
    list_filter = ("status", "trigger", "pipeline")
    search_fields = ("=id", "pipeline__name")
    search_help_text = "A full or short id (8+ characters), or a pipeline's name."
    ordering = ("-id",)
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    change_form_template = "admin/pipelines/pipelinerun/change_form.html"
    readonly_fields = (
        "id",
        "status_badge",
        "pipeline_link",
        "trigger",
        "schedule_link",
        "scheduled_for_shown",
        "when_created",
        "when_started",
        "when_finished",
        "duration",
        "env_shown",
        "trace_id",
    )
    # What changes while it runs on two lines at the top, then (in the template) the
    # graph, the jobs and the outputs, then the rest.
    fieldsets = (
        (
            None,
            {
                "fields": (
                    ("status_badge", "pipeline_link", "trigger", "duration"),
                    ("when_created", "when_started", "when_finished"),
                )
            },
        ),
        ("Parameters", {"fields": ("env_shown",)}),
        ("Details", {"fields": ("id", "schedule_link", "scheduled_for_shown", "trace_id")}),
    )

    # -- read-only history ---------------------------------------------------------

    def has_add_permission(self, request):
        return False  # a run starts from its pipeline's page ("Run pipeline")

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        by_id = id_search(queryset, term)
        if by_id is not None:
            return by_id, False
        return queryset.filter(pipeline__name__icontains=term), False

    # -- columns -------------------------------------------------------------------

    @admin.display(description="id", ordering="id")
    def short_id(self, obj):
        return str(obj.id)[:13]

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return status_pill(obj.status)

    pipeline_link = link_column("pipeline", "pipeline", ordering="pipeline__name")

    schedule_link = link_column("schedule", "schedule", show_id=True)

    created = time_column("created_at", "created", compact=True, sortable=True)
    started = time_column("started_at", "started", compact=True, sortable=True)
    when_created = time_column("created_at", "created")
    when_started = time_column("started_at", "started")
    when_finished = time_column("finished_at", "finished")
    scheduled_for_shown = time_column("scheduled_for", "scheduled for")

    @admin.display(description="duration")
    def duration(self, obj):
        return hodei_ms(obj.duration_ms)

    @admin.display(description="env")
    def env_shown(self, obj):
        if not obj.env:
            return "–"
        return format_html(
            '<pre class="hodei-env">{}</pre>', json.dumps(obj.env, indent=2, sort_keys=True)
        )

    # -- detail page: the live graph, jobs and outputs -----------------------------

    def get_urls(self):
        views = [
            ("<path:object_id>/state.json", self.state_view, "state"),
            ("<path:object_id>/operate/<str:operation>/", self.operate_view, "operate"),
        ]
        return [*object_urls(self, views), *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.get_object(request, object_id)
        extra = {}
        if run is not None:
            extra = {
                "state": self._state(request, run),
                "can_operate": self.has_operate_permission(request),
                "can_run": self.has_run_permission(request),
            }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def _state(self, request, run: PipelineRun) -> dict:
        """Everything on the run's page that changes while it runs, the graph, the jobs
        and the outputs as HTML fragments rendered as on the first load."""
        jobs = services.run_jobs(run)
        names = {row["job_id"]: row["name"] for row in jobs}
        context = {
            "jobs": [
                {
                    **row,
                    "need_names": [names.get(n, n) for n in row["needs"]],
                    # Compact, as in lists: the table fits a 1400 px screen.
                    "started_html": moment(
                        getattr(row["execution"], "started_at", None), compact=True
                    ),
                    "finished_html": moment(
                        getattr(row["execution"], "finished_at", None), compact=True
                    ),
                }
                for row in jobs
            ],
            "outputs": [
                (row["name"], name, value)
                for row in jobs
                if row["execution"] is not None
                for name, value in sorted(row["execution"].outputs.items())
            ],
            "log_readable": request.user.has_perm("workermanager.view_executionlog"),
        }
        return {
            "status": run.status,
            "active": run.status in ACTIVE_RUN,
            "status_html": status_pill(run.status),
            "started_html": self.when_started(run),
            "finished_html": self.when_finished(run),
            "duration": self.duration(run),
            "can_cancel": run.status in ACTIVE_RUN,
            "can_retry": run.status in RETRYABLE_RUN,
            "graph_html": run_graph(run, jobs),
            "jobs_html": render_to_string("admin/pipelines/pipelinerun/jobs.html", context),
            "outputs_html": render_to_string("admin/pipelines/pipelinerun/outputs.html", context),
        }

    def state_view(self, request, object_id):
        """The page's live state, for its poller (static/pipelines/run-live.js)."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        run = get_object_or_404(PipelineRun, pk=uuid_or_404(object_id))
        return JsonResponse(self._state(request, run))

    def operate_view(self, request, object_id, operation):
        if operation not in ("cancel", "retry"):
            raise Http404
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        allowed = self.has_operate_permission if operation == "cancel" else self.has_run_permission
        if not allowed(request):
            raise PermissionDenied
        run = get_object_or_404(PipelineRun, pk=uuid_or_404(object_id))
        try:
            if operation == "cancel":
                services.pipeline_run_cancel(run=run)
                self.message_user(request, "Run cancelled.", messages.SUCCESS)
            else:
                services.pipeline_run_retry(run=run)
                message = "Retrying the jobs that did not succeed."
                self.message_user(request, message, messages.SUCCESS)
        except HodeiError as exc:  # a run that has finished, or has nothing to retry
            self.message_user(request, exc.message, messages.ERROR)
        return redirect("admin:pipelines_pipelinerun_change", run.pk)


class PipelineAdmin(orchestrator_admin.PipelineAdmin):
    """The orchestrator's pipeline page with its runs: the graph coloured by the latest
    run, the recent runs, and "Run pipeline"."""

    change_form_template = "admin/pipelines/pipeline_change_form.html"
    RECENT_RUNS = 5

    def get_urls(self):
        run = path(
            "<path:object_id>/run/",
            self.admin_site.admin_view(self.run_view),
            name="orchestrator_pipeline_run",
        )
        return [run, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        pipeline = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if pipeline is not None:
            runs = list(PipelineRun.objects.filter(pipeline=pipeline)[: self.RECENT_RUNS])
            extra["recent_runs"] = runs
            extra["latest_run"] = runs[0] if runs else None
            extra["can_run_pipeline"] = permissions.may_run(request.user)
            extra["may_view_runs"] = request.user.has_perm("pipelines.view_pipelinerun")
        return super().change_view(request, object_id, form_url, extra)

    def job_states(self, request, pipeline: Pipeline) -> dict[str, str]:
        """Each job's state in the pipeline's latest run (jobs added since stay grey)."""
        latest = PipelineRun.objects.filter(pipeline=pipeline).first()
        if latest is None:
            return {}
        return {row["job_id"]: row["state"] for row in services.run_jobs(latest)}

    def run_view(self, request, object_id):
        """Run pipeline (the button): start a run of all its jobs and go to its page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not permissions.may_run(request.user):
            raise PermissionDenied
        pipeline = get_object_or_404(Pipeline, pk=uuid_or_404(object_id))
        try:
            run = services.pipeline_run_start(pipeline=pipeline, trigger=RunTrigger.ADMIN)
        except HodeiError as exc:  # an archived pipeline
            self.message_user(request, exc.message, messages.ERROR)
            return redirect("admin:orchestrator_pipeline_change", pipeline.pk)
        self.message_user(request, f"{pipeline}: run started.", messages.SUCCESS)
        return redirect("admin:pipelines_pipelinerun_change", run.pk)


# In place of the orchestrator's own registration (see the module's docstring).
admin.site.unregister(Pipeline)
admin.site.register(Pipeline, PipelineAdmin)
