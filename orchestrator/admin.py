from django import forms
from django.contrib import admin
from django.db.models import Count
from django.urls import reverse
from django.utils.safestring import SafeString

from accounts import permissions
from hodei.api.fields import ENV_NAME
from hodei.exceptions import InvalidInput
from hodei.lib import dag_svg
from hodei.lib import secrets as hodei_secrets
from hodei.templatetags.hodei import status_pill
from orchestrator import services
from orchestrator.choices import PipelineStatus
from orchestrator.models import JOB_SETTINGS, PIPELINE_SETTINGS, Job, Pipeline


class JobInline(admin.TabularInline):
    model = Job
    fields = ("name", "command", "type", "worker_type", "timeout_seconds", "max_retries", "status")
    readonly_fields = ("status",)
    show_change_link = True

    def get_extra(self, request, obj=None, **kwargs):
        return 1 if obj is None else 0  # a new pipeline starts with a blank job row

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        # The rows fit a 1400 px screen (the admin's widths make them 1700 px wide); a
        # long command scrolls in its box, and its job's page shows it whole.
        if db_field.name == "command":
            kwargs["widget"] = forms.Textarea(attrs={"rows": 2, "style": "width: 26em"})
        elif db_field.name in ("name", "worker_type"):
            kwargs["widget"] = forms.TextInput(attrs={"style": "width: 11em"})
        return super().formfield_for_dbfield(db_field, request, **kwargs)


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = ("name", "status_badge", "job_count", "created_at", "updated_at")
    list_filter = ("status",)
    search_fields = ("name", "description")
    inlines = [JobInline]
    actions = ("archive_selected",)
    fields = PIPELINE_SETTINGS
    change_form_template = "admin/orchestrator/pipeline/change_form.html"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return status_pill(obj.status)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        pipeline = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if pipeline is not None:
            extra["pipeline_graph"] = self.pipeline_graph(request, pipeline)
        return super().change_view(request, object_id, form_url, extra)

    def job_states(self, request, pipeline: Pipeline) -> dict[str, str]:
        """job id -> the state its node is coloured by (a status of the palette). None at
        this layer: runs belong to the pipelines app, whose admin extends this page with
        the states of the pipeline's latest run (pipelines/admin.py)."""
        return {}

    def pipeline_graph(self, request, pipeline: Pipeline) -> SafeString | None:
        """The pipeline's jobs and their dependencies as an SVG DAG, each job linking to
        its page; None for a pipeline without jobs."""
        jobs = list(pipeline.jobs.only("id", "name", "command"))
        if not jobs:
            return None
        states = self.job_states(request, pipeline)
        nodes = []
        for job in jobs:
            state = states.get(str(job.pk))
            first_line = (job.command.strip().splitlines() or [""])[0]
            nodes.append(
                dag_svg.Node(
                    id=str(job.pk),
                    label=str(job),
                    state=state,
                    url=reverse("admin:orchestrator_job_change", args=[job.pk]),
                    detail=state.replace("_", " ") if state else "not run",
                    title=f"{job}: {first_line}" if first_line else str(job),
                )
            )
        # One query for every edge: (needed, needing), the way a run goes.
        needs = Job.depends_on.through.objects.filter(from_job__pipeline=pipeline)
        edges = [(str(n), str(j)) for j, n in needs.values_list("from_job_id", "to_job_id")]
        return dag_svg.render(nodes, edges, label=f"Jobs of {pipeline}")

    def get_queryset(self, request):
        # One query for the page, not one COUNT per row.
        return super().get_queryset(request).annotate(job_total=Count("jobs"))

    @admin.display(description="jobs", ordering="job_total")
    def job_count(self, obj):
        return obj.job_total

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        # Through the service, as the API: it stamps updated_at.
        changed = {name: getattr(obj, name) for name in form.changed_data}
        services.pipeline_update(pipeline=obj, **changed)

    def save_formset(self, request, form, formset, change):
        if formset.model is not Job:
            return super().save_formset(request, form, formset, change)
        formset.save(commit=False)
        for job in formset.deleted_objects:
            job.delete()
        for job in formset.new_objects:
            job.save()
        for job, changed in formset.changed_objects:
            # Through the service, as the API (and as the job's own page).
            services.job_update(job=job, **{name: getattr(job, name) for name in changed})
        formset.save_m2m()

    def delete_model(self, request, obj):
        services.pipeline_delete(pipeline=obj, cascade=True)

    def delete_queryset(self, request, queryset):
        for pipeline in queryset:
            services.pipeline_delete(pipeline=pipeline, cascade=True)

    @admin.action(description="Archive selected pipelines", permissions=["change"])
    def archive_selected(self, request, queryset):
        for pipeline in queryset:
            services.pipeline_update(pipeline=pipeline, status=PipelineStatus.ARCHIVED)
        self.message_user(request, f"{queryset.count()} pipeline(s) archived.")


class JobAdminForm(forms.ModelForm):
    # Secret values are write-only: the field shows names with the mask, never values.
    secrets = forms.CharField(
        label="Secret env",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60, "autocomplete": "off"}),
        help_text=f"One NAME=value per line, values of {hodei_secrets.MIN_LENGTH}+ characters. "
        f"NAME={hodei_secrets.MASK} keeps the stored value; a line removed removes it. Stored "
        "encrypted; never shown again.",
    )

    class Meta:
        model = Job
        fields = ["pipeline", *(f for f in JOB_SETTINGS if f != "secret_env"), "depends_on"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        names = self.instance.secret_env if self.instance.pk else {}
        self.fields["secrets"].initial = "\n".join(f"{n}={hodei_secrets.MASK}" for n in names)

    def clean_secrets(self):
        given = {}
        for number, line in enumerate(self.cleaned_data["secrets"].splitlines(), 1):
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            if not sep or not ENV_NAME.fullmatch(name.strip()):
                raise forms.ValidationError(f"Line {number}: NAME=value, NAME a variable name.")
            given[name.strip()] = value
        current = self.instance.secret_env if self.instance.pk else {}
        try:
            # The service's rule: the mask keeps a value, short values are refused.
            self.stored_secrets = services.secret_env_stored(given, current=current)
        except InvalidInput as exc:
            raise forms.ValidationError(exc.fields["secret_env"]) from None
        return given

    def clean(self):
        data = super().clean()
        pipeline, depends_on = data.get("pipeline"), list(data.get("depends_on") or [])
        job = self.instance
        moving = not job._state.adding and pipeline is not None and pipeline.pk != job.pipeline_id
        if moving and job.dependents.exists():
            # As the service refuses it: the jobs that depend on this one would then
            # depend on a job of another pipeline.
            self.add_error(
                "pipeline",
                "Other jobs depend on this one; remove their dependencies before moving it "
                "to another pipeline.",
            )
        if pipeline is not None and depends_on:
            job.pipeline = pipeline
            try:
                services.validate_dependencies(job=job, depends_on=depends_on)
            except InvalidInput as exc:
                self.add_error("depends_on", exc.message)
        return data


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    form = JobAdminForm
    list_display = ("__str__", "pipeline", "type", "worker_type", "status_badge", "updated_at")
    list_filter = ("status", "type", "pipeline")
    list_select_related = ("pipeline",)
    search_fields = ("name", "command", "pipeline__name")
    # Autocomplete, not a <select> of every job: the page stays light with 10^3+ jobs.
    autocomplete_fields = ("pipeline", "depends_on")
    readonly_fields = ("status_badge",)
    fieldsets = (
        (None, {"fields": ("pipeline", "name", "description", "status_badge")}),
        (
            "Command",
            {"fields": ("command", "type", "worker_type", "labels", "env", "secrets")},
        ),
        (
            "In its pipeline",
            {"fields": ("depends_on", "allow_failure")},
        ),
        ("Queue", {"fields": ("priority", "concurrency_limit")}),
        (
            "Limits and retries",
            {
                "fields": (
                    "timeout_seconds",
                    "max_retries",
                    "retry_delay_seconds",
                    "retry_backoff",
                    "max_lost_retries",
                )
            },
        ),
        (
            "Sandbox",
            {"fields": ("network", "memory_limit_mb", "pids_limit", "cpu_limit")},
        ),
        ("Retention", {"fields": ("retention_days", "retention_count")}),
    )

    change_form_template = "admin/orchestrator/job/change_form.html"
    RECENT_EXECUTIONS = 10

    @admin.display(description="last status", ordering="status")
    def status_badge(self, obj):
        return status_pill(obj.status)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if job is not None:
            # Reverse relations: the job page reads its executions and schedules without
            # importing the apps that own them (they sit above this one).
            extra["recent_executions"] = job.executions.order_by("-id")[: self.RECENT_EXECUTIONS]
            extra["job_schedules"] = job.schedules.order_by("-id")
            extra["can_run"] = permissions.may_run(request.user)
        return super().change_view(request, object_id, form_url, extra)

    def save_model(self, request, obj, form, change):
        # Already encrypted by the form's check (services.secret_env_stored).
        obj.secret_env = form.stored_secrets
        super().save_model(request, obj, form, change)

    def delete_model(self, request, obj):
        # The confirmation page listed the schedules that go with it: that is the ask.
        services.job_delete(job=obj, cascade=True)

    def delete_queryset(self, request, queryset):
        for job in queryset:
            services.job_delete(job=job, cascade=True)

    def save_related(self, request, form, formsets, change):
        # depends_on goes through the service, which locks and checks it again.
        depends_on = list(form.cleaned_data.pop("depends_on", []))
        super().save_related(request, form, formsets, change)
        services.job_update(job=form.instance, depends_on=depends_on)
