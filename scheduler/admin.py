from django import forms
from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import JsonResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from hodei.admin_tools import status_badge
from hodei.lib import clock
from hodei.templatetags.hodei import hodei_duration
from scheduler import services
from scheduler.cron import CronError, next_fire_times, parse_timezone, validate_cron
from scheduler.models import Schedule, ScheduleFire, Worker
from workermanager.choices import ExecutionStatus
from workermanager.models import Execution


class ScheduleForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = [
            "job",
            "name",
            "cron",
            "timezone",
            "schedule_time",
            "enabled",
            "overlap_policy",
            "misfire_policy",
        ]
        help_texts = {
            "cron": "5 fields (minute hour day month weekday), or 6 with leading seconds.",
            "timezone": "IANA name, such as Europe/Madrid.",
        }

    def clean(self):
        data = super().clean()
        cron, schedule_time = data.get("cron") or "", data.get("schedule_time")
        if bool(cron) == (schedule_time is not None):
            raise forms.ValidationError("Give exactly one of cron or schedule time.")
        try:
            parse_timezone(data.get("timezone") or "UTC")
        except CronError as exc:
            self.add_error("timezone", str(exc))
        if cron:
            try:
                data["cron"] = validate_cron(cron)
            except CronError as exc:
                self.add_error("cron", str(exc))
        return data


HISTORY_ROWS = 20


class LatestFiresFormSet(forms.BaseInlineFormSet):
    """The newest HISTORY_ROWS slots of this schedule; a schedule firing every second has
    millions of rows. (Sliced here, after the formset has filtered by the schedule: in
    the inline's get_queryset the newest rows would be those of every schedule.)"""

    def get_queryset(self):
        if not hasattr(self, "_latest"):
            self._latest = super().get_queryset().order_by("-slot_at")[:HISTORY_ROWS]
        return self._latest


class ScheduleFireInline(admin.TabularInline):
    model = ScheduleFire
    formset = LatestFiresFormSet
    fields = ("slot_at", "outcome", "execution", "lag", "is_manual", "detail")
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0
    ordering = ("-slot_at",)
    verbose_name_plural = f"History (latest {HISTORY_ROWS} slots)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("execution")

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="lag")
    def lag(self, obj):
        return f"{obj.lag_ms} ms" if obj.pk else ""


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = (
        "__str__",
        "job",
        "cron",
        "timezone",
        "status_badge",
        "overlap_policy",
        "last_run_at",
        "next_run_at",
    )
    list_filter = ("status", "enabled", "overlap_policy", "misfire_policy")
    list_select_related = ("job",)
    search_fields = ("name", "cron", "job__name")
    raw_id_fields = ("job",)
    actions = ("enable_selected", "pause_selected", "run_now")
    inlines = [ScheduleFireInline]
    readonly_fields = ("status", "last_run_at", "next_run_at", "upcoming")
    change_form_template = "admin/scheduler/schedule/change_form.html"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return status_badge(obj.status)

    @admin.display(description="next five fire times (UTC)")
    def upcoming(self, obj):
        times = services.schedule_upcoming(obj) if obj.pk else []
        if not times:
            return "–"
        return format_html_join(
            "", '<div class="hodei-upcoming">{}</div>', ((t.isoformat(),) for t in times)
        )

    def save_model(self, request, obj, form, change):
        """Through the services, as the API: the django-q2 row follows every change."""
        # The editable fields only (the admin's form class also names the read-only ones),
        # and on a change only those changed, as a PATCH: saving an unchanged form must
        # not re-arm a completed one-off schedule or move a pending slot.
        names = [
            name for name in ScheduleForm.Meta.fields if not change or name in form.changed_data
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
            *super().get_urls(),
        ]

    def preview_view(self, request):
        """The next five fire times of a cron in a timezone, for the form (before saving)."""
        cron = request.GET.get("cron", "")
        tz = request.GET.get("timezone") or "UTC"
        try:
            times = next_fire_times(validate_cron(cron), tz, after=clock.now(), count=5)
        except CronError as exc:
            return JsonResponse({"error": str(exc)}, status=400)
        return JsonResponse({"upcoming": [t.isoformat() for t in times]})

    @admin.action(description="Enable (resume) selected schedules", permissions=["change"])
    def enable_selected(self, request, queryset):
        for schedule in queryset:
            services.schedule_update(schedule=schedule, enabled=True)
        self.message_user(request, f"{queryset.count()} schedule(s) enabled.")

    @admin.action(description="Pause selected schedules", permissions=["change"])
    def pause_selected(self, request, queryset):
        for schedule in queryset:
            services.schedule_update(schedule=schedule, enabled=False)
        self.message_user(request, f"{queryset.count()} schedule(s) paused.")

    @admin.action(description="Run selected schedules now", permissions=["change"])
    def run_now(self, request, queryset):
        for schedule in queryset:
            fire = services.schedule_run_now(schedule=schedule)
            if fire and fire.execution_id:
                url = reverse("admin:workermanager_execution_change", args=[fire.execution_id])
                self.message_user(
                    request,
                    format_html('{}: queued <a href="{}">{}</a>', schedule, url, fire.execution_id),
                )
            else:
                outcome = fire.outcome if fire else "nothing to do"
                self.message_user(request, f"{schedule}: {outcome}", messages.WARNING)


class RunningExecutionInline(admin.TabularInline):
    model = Execution
    fk_name = "worker"
    fields = ("id", "job", "command", "started_at")
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0
    verbose_name_plural = "Running executions"

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .filter(status=ExecutionStatus.RUNNING)
            .select_related("job")
        )


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "type",
        "heartbeat",
        "status_badge",
        "labels",
        "capacity",
        "in_use",
        "hostname",
        "registered_at",
    )
    list_filter = ("status", "type")
    search_fields = ("name", "hostname", "type")
    actions = ("drain_selected", "undrain_selected")
    inlines = [RunningExecutionInline]
    readonly_fields = (
        "name",
        "type",
        "status",
        "labels",
        "capacity",
        "hostname",
        "version",
        "pid",
        "registered_at",
        "last_heartbeat_at",
        "stopped_at",
        "heartbeat",
        "in_use",
        "executions_link",
    )

    def get_queryset(self, request):
        # A subquery on the partial index of running executions; a Count over the join
        # would read every execution each worker ever ran.
        running = (
            Execution.objects.filter(worker=OuterRef("pk"), status=ExecutionStatus.RUNNING)
            .order_by()
            .values("worker")
            .annotate(n=Count("id"))
            .values("n")
        )
        return super().get_queryset(request).annotate(running_count=Coalesce(Subquery(running), 0))

    def has_add_permission(self, request):
        return False  # agents register themselves

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return status_badge(obj.status)

    @admin.display(description="in use")
    def in_use(self, obj):
        return f"{getattr(obj, 'running_count', 0)} / {obj.capacity}"

    @admin.display(description="last heartbeat", ordering="last_heartbeat_at")
    def heartbeat(self, obj):
        if obj.last_heartbeat_at is None:
            return "never"
        now = clock.now()
        age = now - obj.last_heartbeat_at
        state = obj.liveness(now=now)
        return format_html(
            '<span class="hodei-heartbeat-{}">{} ago ({})</span>', state, hodei_duration(age), state
        )

    @admin.display(description="executions")
    def executions_link(self, obj):
        url = reverse("admin:workermanager_execution_changelist") + f"?worker__id__exact={obj.pk}"
        return format_html('<a href="{}">all executions of this worker</a>', url)

    @admin.action(description="Drain: stop taking new work, finish current", permissions=["change"])
    def drain_selected(self, request, queryset):
        self._apply(request, queryset, Worker.drain, "draining")

    @admin.action(description="Undo drain", permissions=["change"])
    def undrain_selected(self, request, queryset):
        self._apply(request, queryset, Worker.undrain, "taking work again")

    def _apply(self, request, queryset, method, verb):
        """Apply the model's transition; a worker it does not apply to is reported."""
        done = 0
        for worker in queryset:
            before = worker.status
            method(worker)
            if worker.status != before:
                done += 1
            else:
                message = f"{worker.name} is {worker.status}: unchanged."
                self.message_user(request, message, messages.WARNING)
        if done:
            self.message_user(request, f"{done} worker(s) {verb}.", messages.SUCCESS)
