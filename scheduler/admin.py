from django import forms
from django.contrib import admin, messages
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html

from accounts import permissions
from hodei.admin_tools import apply_each, latest_formset
from hodei.exceptions import HodeiError, InvalidInput
from hodei.lib import clock
from hodei.templatetags.hodei import moment, relative, status_pill
from scheduler import services
from scheduler.choices import FireOutcome
from scheduler.cron import CronError, next_fire_times, parse_timezone, validate_cron
from scheduler.models import Schedule, ScheduleFire


class ScheduleForm(forms.ModelForm):
    enabled = forms.BooleanField(
        required=False, initial=True, help_text="Unticked: paused, nothing fires."
    )

    class Meta:
        model = Schedule
        fields = [
            "job",
            "pipeline",
            "name",
            "cron",
            "timezone",
            "schedule_time",
            "overlap_policy",
            "misfire_policy",
            "alert_after_seconds",
        ]
        help_texts = {
            "cron": "5 fields (minute hour day month weekday), or 6 with leading seconds.",
            "timezone": "IANA name, such as Europe/Madrid.",
        }

    user = None  # set per request by ScheduleAdmin.get_form

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["enabled"].initial = self.instance.enabled

    def clean(self):
        data = super().clean()
        adding = self.instance.pk is None
        runs = services.schedule_makes_commands_run(
            schedule=None if adding else self.instance,
            changes=data if adding else {n: data.get(n) for n in self.changed_data},
        )
        if bool(data.get("job")) == bool(data.get("pipeline")):
            message = "Give exactly one of a job and a pipeline."
            self.add_error("job", message)
            self.add_error("pipeline", message)
        if runs and self.user is not None:
            # The API's rule and check, not a second one.
            try:
                permissions.require_run(self.user)
            except HodeiError as exc:
                self.add_error(None, exc.message)
        try:
            # The very check the API's service makes.
            data["cron"] = services.validate_timing(
                cron=data.get("cron") or "",
                schedule_time=data.get("schedule_time"),
                timezone=data.get("timezone") or "UTC",
            )
        except InvalidInput as exc:
            for name, errors in (exc.fields or {}).items():
                for error in errors:
                    self.add_error(name if name in self.fields else None, error)
        return data

    # The names the services take, in the order the form shows them.
    SERVICE_FIELDS = (*Meta.fields, "enabled")


HISTORY_ROWS = 20


# How each outcome reads in the history (the choices' values are for the API).
OUTCOME_TEXT = {
    FireOutcome.FIRED: "fired",
    FireOutcome.SKIPPED_OVERLAP: "skipped: previous run still active",
    FireOutcome.SKIPPED_PAUSED: "skipped: its pipeline is paused",
    FireOutcome.REPLACED: "fired, replacing the previous run",
    FireOutcome.MISSED: "missed while no scheduler ran",
    FireOutcome.CAUGHT_UP: "covered by a catch-up run",
}


class ScheduleFireInline(admin.TabularInline):
    model = ScheduleFire
    formset = latest_formset("-slot_at", rows=HISTORY_ROWS)
    fields = ("slot", "what_happened", "execution_link", "lag", "kind", "detail")
    # (execution_link shows a pipeline slot's run)
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0
    ordering = ("-slot_at",)
    verbose_name = "slot"
    verbose_name_plural = f"History (latest {HISTORY_ROWS} slots)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("execution", "pipeline_run", "schedule")

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="slot")
    def slot(self, obj):
        return moment(obj.slot_at, tz=obj.schedule.timezone) if obj.pk else ""

    @admin.display(description="what happened")
    def what_happened(self, obj):
        return OUTCOME_TEXT.get(obj.outcome, obj.outcome) if obj.pk else ""

    @admin.display(description="execution or run")
    def execution_link(self, obj):
        if obj.pipeline_run_id:
            url = reverse("admin:pipelines_pipelinerun_change", args=[obj.pipeline_run_id])
            return format_html(
                '<a href="{}">run {}</a> {}',
                url,
                str(obj.pipeline_run_id)[:13],
                status_pill(obj.pipeline_run.status),
            )
        if not obj.execution_id:
            return "–"
        url = reverse("admin:workermanager_execution_change", args=[obj.execution_id])
        return format_html(
            '<a href="{}">{}</a> {}',
            url,
            str(obj.execution_id)[:13],
            status_pill(obj.execution.status),
        )

    @admin.display(description="lag")
    def lag(self, obj):
        return f"{obj.lag_ms} ms" if obj.pk else ""

    @admin.display(description="kind")
    def kind(self, obj):
        return "run now" if obj.is_manual else "scheduled slot"


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = (
        "__str__",
        "runs",
        "when",
        "status_badge",
        "health_badge",
        "next_run",
        "last_run",
        "overlap_policy",
    )
    list_filter = ("status", "health", "overlap_policy", "misfire_policy")
    list_select_related = ("job", "pipeline")
    search_fields = ("name", "cron", "job__name", "pipeline__name")
    raw_id_fields = ("job", "pipeline")
    actions = ("enable_selected", "pause_selected", "run_now")
    inlines = [ScheduleFireInline]
    readonly_fields = ("status_badge", "health_badge", "last_run", "next_run")
    change_form_template = "admin/scheduler/schedule/change_form.html"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return status_pill(obj.status)

    @admin.display(description="runs")
    def runs(self, obj):
        if obj.pipeline_id:
            return format_html("pipeline {}", obj.pipeline)
        return format_html("job {}", obj.job)

    @admin.display(description="health", ordering="health")
    def health_badge(self, obj):
        """Dead-man alerting: up, down (with why), or – when it has none."""
        if obj.alert_after_seconds is None:
            return "–"
        if obj.health == "down":
            return format_html(
                '{} <span class="hodei-muted" title="{}">since {}</span>',
                status_pill("down"),
                obj.health_reason,
                moment(obj.down_since, tz=obj.timezone, compact=True),
            )
        return status_pill(obj.health)

    @admin.display(description="when")
    def when(self, obj):
        what = obj.cron or f"once at {obj.schedule_time:%Y-%m-%d %H:%M:%S}"
        return format_html("<code>{}</code> {}", what, obj.timezone)

    @admin.display(description="next run", ordering="next_run_at")
    def next_run(self, obj):
        return moment(obj.next_run_at, tz=obj.timezone, compact=True)

    @admin.display(description="last run", ordering="last_run_at")
    def last_run(self, obj):
        return moment(obj.last_run_at, tz=obj.timezone, compact=True)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"user": request.user})

    def has_run_permission(self, request, obj=None) -> bool:
        return self.has_change_permission(request, obj) and permissions.may_run(request.user)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("enabled", True)
        return initial

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {"can_run": self.has_run_permission(request)}
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def save_model(self, request, obj, form, change):
        """Through the services, as the API: the django-q2 row follows every change."""
        # The editable fields only (the admin's form class also names the read-only ones),
        # and on a change only those changed, as a PATCH: saving an unchanged form must
        # not re-arm a completed one-off schedule or move a pending slot.
        names = [
            name for name in ScheduleForm.SERVICE_FIELDS if not change or name in form.changed_data
        ]
        data = {name: form.cleaned_data.get(name) for name in names}
        if "cron" in data:
            data["cron"] = data["cron"] or ""
        # The form validated exactly what the services check.
        if change:
            saved = services.schedule_update(schedule=obj, **data)
        else:
            saved = services.schedule_create(**data)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.schedule_delete(schedule=obj)  # with its django-q2 row, as the API

    def delete_queryset(self, request, queryset):
        for schedule in queryset:
            services.schedule_delete(schedule=schedule)

    def get_urls(self):
        return [
            path(
                "preview/",
                self.admin_site.admin_view(self.preview_view),
                name="scheduler_schedule_preview",
            ),
            path(
                "<uuid:schedule_id>/run/",
                self.admin_site.admin_view(self.run_view),
                name="scheduler_schedule_run",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request):
        """The next five fire times of a cron in a timezone, in that timezone and in UTC,
        for the form (as it is typed, and as it is saved)."""
        cron = request.GET.get("cron", "")
        tz = request.GET.get("timezone") or "UTC"
        try:
            times = next_fire_times(validate_cron(cron), tz, after=clock.now(), count=5)
        except CronError as exc:
            return JsonResponse({"error": str(exc)}, status=400)
        zone = parse_timezone(tz)
        return JsonResponse(
            {
                "timezone": tz,
                "upcoming": [
                    {
                        "local": t.astimezone(zone).strftime("%a %Y-%m-%d %H:%M:%S %Z"),
                        "utc": t.strftime("%H:%M:%S UTC"),
                        "relative": relative(t),
                        "at": t.isoformat(),
                    }
                    for t in times
                ],
            }
        )

    def run_view(self, request, schedule_id):
        """Run now (the schedule page's button): fire it outside its slots, under its
        overlap policy, and go to the execution it queued."""
        if request.method != "POST" or not self.has_run_permission(request):
            raise Http404
        schedule = get_object_or_404(Schedule, pk=schedule_id)
        fire = services.schedule_run_now(schedule=schedule)
        if fire is not None and fire.pipeline_run_id:
            self.message_user(request, f"{schedule}: pipeline run started.", messages.SUCCESS)
            return redirect("admin:pipelines_pipelinerun_change", fire.pipeline_run_id)
        if fire is not None and fire.execution_id:
            self.message_user(request, f"{schedule}: run queued.", messages.SUCCESS)
            return redirect("admin:workermanager_execution_change", fire.execution_id)
        outcome = OUTCOME_TEXT.get(fire.outcome, fire.outcome) if fire else "nothing to do"
        self.message_user(request, f"{schedule}: {outcome}.", messages.WARNING)
        return redirect("admin:scheduler_schedule_change", schedule.pk)

    @admin.action(description="Enable (resume) selected schedules", permissions=["run"])
    def enable_selected(self, request, queryset):
        apply_each(
            self,
            request,
            queryset,
            lambda s: services.schedule_update(schedule=s, enabled=True),
            done="{count} schedule(s) enabled.",
            label=str,
        )

    @admin.action(description="Pause selected schedules", permissions=["change"])
    def pause_selected(self, request, queryset):
        apply_each(
            self,
            request,
            queryset,
            lambda s: services.schedule_update(schedule=s, enabled=False),
            done="{count} schedule(s) paused.",
            label=str,
        )

    @admin.action(description="Run selected schedules now", permissions=["run"])
    def run_now(self, request, queryset):
        for schedule in queryset:
            fire = services.schedule_run_now(schedule=schedule)
            if fire and fire.pipeline_run_id:
                url = reverse("admin:pipelines_pipelinerun_change", args=[fire.pipeline_run_id])
                self.message_user(
                    request,
                    format_html(
                        '{}: started run <a href="{}">{}</a>', schedule, url, fire.pipeline_run_id
                    ),
                )
            elif fire and fire.execution_id:
                url = reverse("admin:workermanager_execution_change", args=[fire.execution_id])
                self.message_user(
                    request,
                    format_html('{}: queued <a href="{}">{}</a>', schedule, url, fire.execution_id),
                )
            else:
                outcome = OUTCOME_TEXT.get(fire.outcome, fire.outcome) if fire else "nothing to do"
                self.message_user(request, f"{schedule}: {outcome}", messages.WARNING)
