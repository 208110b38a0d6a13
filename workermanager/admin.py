import threading
import time

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.html import format_html

from accounts import permissions
from hodei.admin_tools import (
    CappedCountPaginator,
    apply_each,
    latest_formset,
    link_column,
    object_urls,
    time_column,
    uuid_or_404,
)
from hodei.api.fields import LABEL_KEY
from hodei.exceptions import HodeiError, InvalidTransition
from hodei.lib import clock
from hodei.lib.durations import parse_duration
from hodei.lib.lookup import id_search
from hodei.templatetags.hodei import hodei_duration, hodei_ms, moment, status_pill
from orchestrator.models import Job
from workermanager import credentials, managed, pools, selectors, services, waiting
from workermanager.choices import ACTIVE, MANAGED_LIVE, ExecutionStatus, PoolStatus, Trigger
from workermanager.models import (
    Execution,
    ManagedWorker,
    PoolScaling,
    RegistrationToken,
    Worker,
    WorkerPool,
)
from workermanager.providers import PROVIDERS

NO_SANDBOX = (
    "Its commands run unsandboxed, as the agent's own user: they can read its environment "
    "and files and signal it. See docs/security.md."
)


class WorkerTypeFilter(admin.SimpleListFilter):
    """Executions by worker type. The choices come from the (small) job and worker tables:
    the default filter's SELECT DISTINCT over every execution scans 10^6 rows per page."""

    title = "worker type"
    parameter_name = "worker_type"

    def lookups(self, request, model_admin):
        types = set(Job.objects.exclude(worker_type="").values_list("worker_type", flat=True))
        types |= set(Worker.objects.values_list("type", flat=True))
        return [(t, t) for t in sorted(types)]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset if value is None else queryset.filter(worker_type=value)


_memo = threading.local()


def _list_memo() -> dict:
    """What one page of the list learnt about each worker type's workers (for a second)."""
    if getattr(_memo, "at", 0) < time.monotonic() - 1:
        _memo.at, _memo.value = time.monotonic(), {}
    return _memo.value


@admin.register(Execution)
class ExecutionAdmin(permissions.OperatePermissionMixin, admin.ModelAdmin):
    # What an operator looks for first; the rest is on the execution's page.
    list_display = (
        "short_id",
        "status_badge",
        "job_link",
        "command_preview",
        "worker_or_wait",
        "started",
        "duration",
        "exit_code",
    )
    list_select_related = ("job__pipeline", "worker")
    list_filter = ("status", "type", "trigger", WorkerTypeFilter)
    # Rendered by hodei's calendar_date_hierarchy (see the change_list template): Django's
    # own runs SELECT DISTINCT date_trunc(...) over every matching row.
    date_hierarchy = "created_at"
    change_list_template = "admin/workermanager/execution/change_list.html"
    search_fields = ("=id", "command")
    search_help_text = "A full or short id (8+ characters), or text in the command."
    ordering = ("-id",)
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    actions = ("cancel_selected", "retry_selected")
    raw_id_fields = ("job", "worker", "retry_of", "schedule")
    change_form_template = "admin/workermanager/execution/change_form.html"
    readonly_fields = (
        "id",
        "status_badge",
        "waiting",
        "job_link",
        "command",
        "type",
        "worker_type",
        "env",
        "timeout_seconds",
        "exit_code",
        "error",
        "worker_link",
        "attempt",
        "retry_of_link",
        "trigger",
        "schedule",
        "scheduled_for",
        "cancel_requested",
        "created",
        "available",
        "started",
        "finished",
        "duration",
        "log_bytes",
        "log_truncated",
        "trace_id",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "status_badge",
                    "waiting",
                    "job_link",
                    "command",
                    "type",
                    "exit_code",
                    "error",
                )
            },
        ),
        ("Times", {"fields": ("created", "available", "started", "finished", "duration")}),
        (
            "Run",
            {
                "fields": (
                    "worker_link",
                    "worker_type",
                    "trigger",
                    "attempt",
                    "retry_of_link",
                    "schedule",
                    "scheduled_for",
                    "timeout_seconds",
                    "env",
                    "cancel_requested",
                )
            },
        ),
        (
            "Output and tracing",
            {"fields": ("log_bytes", "log_truncated", "trace_id"), "classes": ("collapse",)},
        ),
    )

    # -- read-only history ---------------------------------------------------------

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def lookup_allowed(self, lookup, value, request=None):
        # Links from jobs, workers and schedules filter by id without listing every job
        # in a sidebar filter (a DISTINCT over 10^6 rows).
        if lookup in ("job__id__exact", "worker__id__exact", "schedule__id__exact"):
            return True
        return super().lookup_allowed(lookup, value, request)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            # The changelist always asks; `command LIKE '%%'` would filter nothing, slowly.
            return queryset, False
        by_id = id_search(queryset, term)
        if by_id is not None:
            return by_id, False
        return queryset.filter(Q(command__icontains=term)), False

    # -- columns -------------------------------------------------------------------

    @admin.display(description="id", ordering="id")
    def short_id(self, obj):
        return str(obj.id)[:13]

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return status_pill(obj.status)

    @admin.display(description="why it waits")
    def waiting(self, obj):
        reason = waiting.waiting_reason(obj)
        if reason is None:
            return "–"
        return format_html(
            '<span data-waiting="{}"><code>{}</code> {} <span class="hodei-muted">(since {})'
            "</span></span>",
            reason.code,
            reason.code,
            reason.message,
            moment(reason.since),
        )

    @admin.display(description="worker", ordering="worker")
    def worker_or_wait(self, obj):
        """The worker, or for a queued or pending execution why it waits (in brief)."""
        if obj.status not in ("queued", "pending"):
            return obj.worker or "–"
        reason = waiting.waiting_reason(obj, brief=True, memo=_list_memo())
        return format_html(
            '<span class="hodei-muted" title="{}" data-waiting="{}">waiting: {}</span>',
            reason.message,
            reason.code,
            reason.code.replace("_", " "),
        )

    job_link = link_column("job", "job", ordering="job")

    worker_link = link_column("worker", "worker", ordering="worker")

    retry_of_link = link_column("retry_of", "retry of", show_id=True)

    @admin.display(description="command")
    def command_preview(self, obj):
        text = obj.command.strip().splitlines()[0] if obj.command.strip() else "(empty)"
        return format_html('<code class="hodei-command" title="{}">{}</code>', obj.command, text)

    @admin.display(description="duration")
    def duration(self, obj):
        return hodei_ms(obj.duration_ms)

    created = time_column("created_at", "created", sortable=True)
    available = time_column("available_at", "not before")
    started = time_column("started_at", "started", compact=True, sortable=True)
    finished = time_column("finished_at", "finished", sortable=True)

    # -- actions -------------------------------------------------------------------

    @admin.action(description="Cancel selected executions", permissions=["operate"])
    def cancel_selected(self, request, queryset):
        apply_each(
            self,
            request,
            queryset,
            lambda e: services.execution_cancel(execution=e),
            done="{count} execution(s) cancelled.",
            label=self.short_id,
        )

    @admin.action(description="Retry selected executions", permissions=["run"])
    def retry_selected(self, request, queryset):
        apply_each(
            self,
            request,
            queryset,
            lambda e: self._retry(request, e),
            done="{count} execution(s) retried.",
            label=self.short_id,
        )

    # -- detail page: live log and state ------------------------------------------

    def get_urls(self):
        views = [
            ("<path:object_id>/tail/", self.tail_view, "tail"),
            ("<path:object_id>/log.txt", self.download_view, "download"),
            ("<path:object_id>/operate/<str:operation>/", self.operate_view, "operate"),
            ("run-job/<uuid:job_id>/", self.run_job_view, "run_job"),
        ]
        return [*object_urls(self, views), *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        execution = self.get_object(request, object_id)
        extra = {}
        if execution is not None:
            # A long log shows its first page here; the poller fetches the rest.
            page = selectors.execution_log_page(execution)
            readable = self.has_log_permission(request)
            extra = {
                "log_readable": readable,
                "log_chunks": [_chunk(c) for c in page.chunks] if readable else [],
                "log_next_offset": page.next_offset,
                "log_complete": page.complete,
                "state": self._state(execution, page),
                "can_operate": self.has_operate_permission(request),
                "can_run": self.has_run_permission(request),
            }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def _state(self, execution: Execution, page) -> dict:
        """Everything on the execution's page that changes while it runs."""
        active = execution.status in ACTIVE
        return {
            "status": execution.status,
            "status_html": status_pill(execution.status),
            "exit_code": execution.exit_code,
            "error": execution.error,
            "duration": self.duration(execution),
            "worker_html": self.worker_link(execution),
            "started_html": moment(execution.started_at),
            "finished_html": moment(execution.finished_at),
            "cancel_requested": execution.cancel_requested,
            "can_cancel": active,
            "can_retry": not active,
            "next_offset": page.next_offset,
            "complete": page.complete,
        }

    def tail_view(self, request, object_id):
        """The log from ``offset`` and the page's live state, for the detail page's poller."""
        if not self.has_view_or_change_permission(request):
            raise Http404
        execution = get_object_or_404(
            Execution.objects.select_related("worker"), pk=uuid_or_404(object_id)
        )
        try:
            offset = max(0, int(request.GET.get("offset", 0)))
        except ValueError:
            offset = 0
        page = selectors.execution_log_page(execution, offset=offset)
        state = self._state(execution, page)
        readable = self.has_log_permission(request)
        state["chunks"] = [_chunk(c) for c in page.chunks] if readable else []
        return JsonResponse(state)

    def has_log_permission(self, request) -> bool:
        """Reading output needs its own permission, as in the API."""
        return request.user.has_perm("workermanager.view_executionlog")

    def download_view(self, request, object_id):
        """The whole log stored so far, as text (the page's "download raw log")."""
        if not self.has_log_permission(request):
            raise Http404
        execution = get_object_or_404(Execution, pk=uuid_or_404(object_id))
        response = StreamingHttpResponse(
            (c.message for c in selectors.execution_log_pages(execution)),
            content_type="text/plain; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="execution-{execution.id}.log"'
        return response

    def _retry(self, request, execution: Execution) -> Execution:
        # The API's rule (accounts.permissions), not a second one.
        permissions.require_run(request.user, own_command=execution.own_command)
        return services.execution_retry(execution=execution, trigger=Trigger.ADMIN)

    def operate_view(self, request, object_id, operation):
        if request.method != "POST" or operation not in ("cancel", "retry"):
            raise Http404
        allowed = self.has_operate_permission if operation == "cancel" else self.has_run_permission
        if not allowed(request):
            raise Http404
        execution = get_object_or_404(Execution, pk=uuid_or_404(object_id))
        try:
            if operation == "cancel":
                services.execution_cancel(execution=execution)
                self.message_user(request, "Execution cancelled.", messages.SUCCESS)
                target = execution
            else:
                target = self._retry(request, execution)
                message = f"Retry queued: attempt {target.attempt}."
                self.message_user(request, message, messages.SUCCESS)
        except HodeiError as exc:
            self.message_user(request, exc.message, messages.WARNING)
            target = execution
        return redirect("admin:workermanager_execution_change", target.pk)

    def run_job_view(self, request, job_id):
        """Run now (the job page's button): queue an execution of the job and go to it,
        to watch its log."""
        if request.method != "POST" or not self.has_run_permission(request):
            raise Http404
        job = get_object_or_404(Job, pk=job_id)
        try:
            execution = services.execution_enqueue(job=job, trigger=Trigger.ADMIN)
        except HodeiError as exc:
            self.message_user(request, exc.message, messages.WARNING)
            return redirect("admin:orchestrator_job_change", job.pk)
        self.message_user(request, f"{job}: execution queued.", messages.SUCCESS)
        return redirect("admin:workermanager_execution_change", execution.pk)


def _chunk(chunk) -> dict:
    return {
        "seq": chunk.seq,
        "stream": chunk.stream,
        "message": chunk.message,
        "at": chunk.created_at.isoformat(),
    }


@admin.register(ManagedWorker)
class ManagedWorkerAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "type",
        "status_badge",
        "concurrency",
        "pid",
        "host",
        "worker",
        "started_at",
        "stopped_at",
    )
    list_filter = ("status", "type", "provider", "pool")
    list_select_related = ("worker",)
    search_fields = ("name", "type", "host")
    actions = ("stop_selected",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("type", "concurrency", "labels")
        return (
            "name",
            "type",
            "status_badge",
            "concurrency",
            "labels",
            "provider",
            "pid",
            "host",
            "worker",
            "failure_reason",
            "created_at",
            "started_at",
            "stopped_at",
        )

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj) if obj is not None else ()

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return status_pill(obj.status)

    def has_change_permission(self, request, obj=None):
        # The form only starts workers; a started worker is changed by actions.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def has_operate_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("workermanager.change_managedworker")

    def add_view(self, request, form_url="", extra_context=None):
        """Start the worker through the provider, as the API does, and outside the
        admin's transaction: a rollback must never forget the row of an agent that
        runs. (The admin wraps its own add view in one.)"""
        if request.method == "POST" and self.has_add_permission(request):
            form = self.get_form(request)(request.POST)
            if form.is_valid():
                return self._start(request, form.cleaned_data)
        return super().add_view(request, form_url, extra_context)

    def _start(self, request, data: dict):
        try:
            started = managed.managed_worker_start(
                type=data["type"], concurrency=data["concurrency"], labels=data["labels"] or {}
            )
        except HodeiError as exc:  # could not start, or a quota
            self.message_user(request, exc.message, messages.ERROR)
            return redirect("admin:workermanager_managedworker_changelist")
        message = f"Worker {started.name} started (pid {started.pid})."
        self.message_user(request, message, messages.SUCCESS)
        return redirect("admin:workermanager_managedworker_change", started.pk)

    def save_model(self, request, obj, form, change):
        raise RuntimeError("managed workers are started by add_view, never saved by the form")

    @admin.action(description="Stop selected workers", permissions=["operate"])
    def stop_selected(self, request, queryset):
        def stop(row):
            if row.status not in MANAGED_LIVE:
                # The service would accept it harmlessly; say that nothing was done.
                raise InvalidTransition(f"already {row.status}.")
            managed.managed_worker_stop(managed=row)

        apply_each(self, request, queryset, stop, done="{count} worker(s) stopped.", label=str)


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
        "status_badge",
        "heartbeat",
        "in_use",
        "isolation_shown",
        "hostname",
        "registered",
    )
    list_filter = ("status", "type")
    search_fields = ("name", "hostname", "type")
    actions = ("drain_selected", "undrain_selected", "revoke_credential_selected")
    inlines = [RunningExecutionInline]
    readonly_fields = (
        "name",
        "type",
        "status",
        "isolation_shown",
        "labels",
        "capacity",
        "hostname",
        "version",
        "pid",
        "registered",
        "last_heartbeat_at",
        "stopped_at",
        "heartbeat",
        "in_use",
        "credential",
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
        return status_pill(obj.status)

    @admin.display(description="isolation", ordering="isolation")
    def isolation_shown(self, obj):
        if obj.isolation == "none":
            return format_html('<span class="hodei-warning" title="{}">none</span>', NO_SANDBOX)
        return obj.isolation

    registered = time_column("registered_at", "registered", compact=True, sortable=True)

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
        apply_each(self, request, queryset, Worker.drain, done="{count} worker(s) draining.")

    @admin.action(description="Undo drain", permissions=["change"])
    def undrain_selected(self, request, queryset):
        apply_each(
            self, request, queryset, Worker.undrain, done="{count} worker(s) taking work again."
        )

    @admin.display(description="credential")
    def credential(self, obj):
        """Its agent's credential over HTTP, if it has one (a database agent has none)."""
        current = obj.credentials.order_by("-id").first()
        if current is None:
            return "none (a database agent)"
        if current.revoked_at is not None:
            return format_html(
                "{}… revoked {}: {}",
                current.prefix,
                moment(current.revoked_at),
                current.revoked_reason or "revoked",
            )
        return format_html(
            "{}… issued {}, last used {}",
            current.prefix,
            moment(current.created_at),
            moment(current.last_used_at) if current.last_used_at else "never",
        )

    @admin.action(
        description="Revoke credential: its agent stops at its next request", permissions=["change"]
    )
    def revoke_credential_selected(self, request, queryset):
        def revoke(worker):
            if not credentials.worker_credential_revoke(worker=worker):
                raise InvalidTransition("it has no valid credential (a database agent?).")

        apply_each(
            self, request, queryset, revoke, done="Revoked {count} credential(s).", label=str
        )


class RegistrationTokenForm(forms.ModelForm):
    """What a new registration token is: the token itself is made on saving."""

    expires = forms.CharField(
        required=False,
        help_text="How long it is valid, such as 7d, 12h or 2w. Empty: until revoked.",
    )
    uses = forms.IntegerField(
        required=False,
        min_value=1,
        help_text="How many agents may register with it. Empty: no limit.",
    )

    class Meta:
        model = RegistrationToken
        fields = ("name", "worker_type", "labels")

    def clean_expires(self):
        raw = self.cleaned_data["expires"].strip()
        try:
            return parse_duration(raw) if raw else None
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    def clean_labels(self):
        labels = self.cleaned_data["labels"] or {}
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and LABEL_KEY.fullmatch(k) and isinstance(v, str)
            for k, v in labels.items()
        ):
            raise ValidationError('A JSON object of label names to strings: {"zone": "eu"}.')
        return labels


@admin.register(RegistrationToken)
class RegistrationTokenAdmin(admin.ModelAdmin):
    """Tokens for agents on other machines: made here (or with `hodei
    createregistrationtoken`), shown once, then only revoked."""

    form = RegistrationTokenForm
    list_display = (
        "prefix",
        "name",
        "worker_type",
        "uses_left",
        "expires_at",
        "revoked_at",
        "created_by",
        "last_used_at",
    )
    list_select_related = ("created_by",)
    list_filter = ("worker_type",)
    search_fields = ("prefix", "name")
    actions = ("revoke_selected",)
    readonly = (
        "prefix",
        "name",
        "worker_type",
        "labels",
        "uses_left",
        "expires_at",
        "revoked_at",
        "created_by",
        "created_at",
        "last_used_at",
    )

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "worker_type", "labels", "expires", "uses")
        return self.readonly

    def get_readonly_fields(self, request, obj=None):
        return self.readonly if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        return False  # revoked, never deleted: its agents' credentials point at it

    def save_model(self, request, obj, form, change):
        if change:
            raise RuntimeError("a registration token is never edited, only revoked")
        data = form.cleaned_data
        token, raw = credentials.registration_token_create(
            created_by=request.user,
            name=data["name"],
            worker_type=data["worker_type"],
            labels=data["labels"],
            lifetime=data["expires"],
            uses=data["uses"],
        )
        obj.pk = token.pk
        self.message_user(
            request,
            f"The registration token, shown this once (copy it now): {raw}  On the agent's "
            f"machine: hodei-agent --server URL --registration-token {raw}",
            messages.WARNING,
        )

    @admin.action(
        description="Revoke selected tokens: no new registrations", permissions=["change"]
    )
    def revoke_selected(self, request, queryset):
        apply_each(
            self,
            request,
            queryset,
            lambda token: token.revoke(now=clock.now()),
            done="Revoked {count} registration token(s).",
            label=lambda token: f"{token.prefix}…",
        )


class WorkerPoolForm(forms.ModelForm):
    provider = forms.ChoiceField(choices=[(name, name) for name in PROVIDERS], initial="local")

    class Meta:
        model = WorkerPool
        fields = pools.POOL_FIELDS


class PoolScalingInline(admin.TabularInline):
    """The pool's latest scaling decisions (the API's /pools/{id}/scalings has them all)."""

    model = PoolScaling
    fields = ("at", "from_workers", "to_workers", "reason", "detail")
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0
    verbose_name_plural = "Scaling decisions (latest 20)"
    formset = latest_formset("-id", rows=20)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WorkerPool)
class WorkerPoolAdmin(admin.ModelAdmin):
    """Pools as the API has them: created and changed through the same services, deleted
    by draining their agents first."""

    form = WorkerPoolForm
    list_display = (
        "worker_type",
        "provider",
        "status_badge",
        "workers",
        "min_workers",
        "max_workers",
        "concurrency",
        "idle_seconds",
        "reconciled",
    )
    list_filter = ("status", "provider")
    search_fields = ("worker_type",)
    inlines = [PoolScalingInline]
    shown_fields = (
        "status_badge",
        "workers",
        "workers_link",
        "desired_workers",
        "created_at",
        "updated_at",
        "reconciled",
    )

    def get_queryset(self, request):
        return selectors.pools_with_worker_counts()

    def get_fields(self, request, obj=None):
        if obj is None:
            return pools.POOL_FIELDS
        return (*pools.POOL_FIELDS, *self.shown_fields)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # The type of a pool's agents cannot change (the API says so too).
        return ("worker_type", *self.shown_fields)

    def has_change_permission(self, request, obj=None):
        # A deleting pool only drains: nothing to change any more.
        if obj is not None and obj.status == PoolStatus.DELETING:
            return False
        return super().has_change_permission(request, obj)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return status_pill(obj.status)

    @admin.display(description="live agents (desired)")
    def workers(self, obj):
        text = f"{getattr(obj, 'current_workers', 0)} ({obj.desired_workers})"
        draining = getattr(obj, "draining_workers", 0)
        return f"{text}, {draining} draining" if draining else text

    @admin.display(description="agents")
    def workers_link(self, obj):
        url = reverse("admin:workermanager_managedworker_changelist") + f"?pool__id__exact={obj.pk}"
        return format_html('<a href="{}">the managed workers of this pool</a>', url)

    @admin.display(description="reconciled", ordering="reconciled_at")
    def reconciled(self, obj):
        return moment(obj.reconciled_at, compact=True) if obj.reconciled_at else "never"

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data[name] for name in pools.POOL_FIELDS}
        if change:
            pools.pool_update(pool=obj, **data)
        else:
            obj.pk = pools.pool_create(**data).pk

    def delete_model(self, request, obj):
        if pools.pool_delete(pool=obj) is not None:
            self.message_user(
                request,
                f"{obj} is draining its agents; it goes once the last has stopped.",
                messages.WARNING,
            )

    def delete_queryset(self, request, queryset):
        for pool in queryset:
            self.delete_model(request, pool)

    def response_delete(self, request, obj_display, obj_id):
        if WorkerPool.objects.filter(pk=obj_id).exists():
            # Draining (delete_model said so): not "deleted successfully" yet.
            return redirect("admin:workermanager_workerpool_change", obj_id)
        return super().response_delete(request, obj_display, obj_id)
