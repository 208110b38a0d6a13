import json
from datetime import timedelta

from django import forms
from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from events.types import EVENT_TYPES
from hodei.admin_tools import (
    CappedCountPaginator,
    apply_each,
    latest_formset,
    link_column,
    time_column,
)
from hodei.exceptions import InvalidInput
from hodei.lib import clock
from hodei.templatetags.hodei import hodei_ms, moment, status_pill
from webhooks import services
from webhooks.choices import DeliveryStatus
from webhooks.models import (
    EVENT_KINDS,
    MIN_SECRET_LENGTH,
    SUBSCRIBABLE_TYPES,
    Delivery,
    DeliveryAttempt,
    Subscription,
)

LATEST_DELIVERIES = 20

EVENT_TYPE_CHOICES = [
    ("*", "* (every event)"),
    *((f"{kind}.*", f"{kind}.* (all)") for kind in sorted(EVENT_KINDS)),
    *((name, name) for name in sorted(SUBSCRIBABLE_TYPES)),
]


class SubscriptionForm(forms.ModelForm):
    event_types = forms.MultipleChoiceField(
        choices=EVENT_TYPE_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        help_text="A wildcard covers every event of its kind, including types added later.",
    )
    # Write-only, as a job's secret variables: the stored secret is never put in a page.
    secret = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=False),
        help_text=f"Blank keeps the current secret. A new one: {MIN_SECRET_LENGTH}+ characters; "
        "it is stored encrypted and never shown again.",
    )

    class Meta:
        model = Subscription
        fields = ["url", "description", "event_types", "pipeline", "job", "schedule", "enabled"]
        widgets = {"url": forms.URLInput(attrs={"style": "width: 40em"})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance._state.adding:
            # A generated secret, shown this once (as a token is): copy it before saving.
            field = self.fields["secret"]
            field.widget = forms.TextInput(attrs={"style": "width: 30em", "autocomplete": "off"})
            field.initial = services.generate_secret()
            field.required = True  # a blank one would be generated unseen
            field.help_text = (
                "Generated for you: copy it now (your receiver verifies signatures with it), "
                f"or type your own of {MIN_SECRET_LENGTH}+ characters. Never shown after saving."
            )

    def clean_secret(self):
        secret = self.cleaned_data["secret"]
        if secret:
            try:
                services.check_secret(secret)  # the API's rule
            except InvalidInput as exc:
                raise forms.ValidationError(exc.fields["secret"]) from None
        return secret


def attempts_html(delivery: Delivery):
    """Each attempt as "#n 500 · 12 ms", its error or the answer's start on hover."""
    attempts = list(delivery.attempts.all())
    if not attempts:
        return "–"
    return format_html_join(
        mark_safe("<br>"),
        '<span title="{}">#{} {} · {} · {}</span>',
        (
            (
                a.error or a.response_body[:200],
                a.number,
                status_pill("succeeded" if a.is_success else "failed"),
                a.status_code or a.error.split(":")[0][:40],
                hodei_ms(a.duration_ms),
            )
            for a in attempts
        ),
    )


class DeliveryInline(admin.TabularInline):
    model = Delivery
    formset = latest_formset("-id", rows=LATEST_DELIVERIES)
    fields = ("delivery_link", "event_type", "status_badge", "attempts", "created", "finished")
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0
    verbose_name_plural = f"Deliveries (latest {LATEST_DELIVERIES})"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("event").prefetch_related("attempts")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="delivery")
    def delivery_link(self, obj):
        url = reverse("admin:webhooks_delivery_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, obj.pk)

    @admin.display(description="event")
    def event_type(self, obj):
        return format_html("{} <span class='hodei-muted'>#{}</span>", obj.event.type, obj.event_id)

    @admin.display(description="status")
    def status_badge(self, obj):
        return status_pill(obj.status)

    @admin.display(description="attempts")
    def attempts(self, obj):
        return attempts_html(obj)

    created = time_column("created_at", "created", compact=True)
    finished = time_column("finished_at", "finished", compact=True)


class WebhooksMedia:
    css = {"all": ["webhooks/admin.css"]}


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    Media = WebhooksMedia
    form = SubscriptionForm
    list_display = ("url", "description", "enabled", "types", "last_delivery", "failures_24h")
    list_filter = ("enabled",)
    search_fields = ("url", "description")
    autocomplete_fields = ("pipeline", "job", "schedule")
    actions = ("send_test", "enable_selected", "disable_selected")
    inlines = [DeliveryInline]
    fieldsets = (
        (None, {"fields": ("url", "description", "secret", "enabled")}),
        ("Events", {"fields": ("event_types",)}),
        (
            "Only about (optional)",
            {
                "fields": ("pipeline", "job", "schedule"),
                "description": "Set any of them to receive only events about it; when "
                "several are set, an event must match all.",
            },
        ),
    )

    def get_queryset(self, request):
        since = clock.now() - timedelta(hours=24)
        latest = Delivery.objects.filter(subscription=OuterRef("pk")).order_by("-id")
        failures = (
            DeliveryAttempt.objects.filter(
                subscription=OuterRef("pk"), is_success=False, attempted_at__gte=since
            )
            .order_by()
            .values("subscription")
            .annotate(n=Count("id"))
            .values("n")
        )
        # Two indexed subqueries per row of the page, not a COUNT over every delivery.
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_status=Subquery(latest.values("status")[:1]),
                failure_count=Coalesce(Subquery(failures, output_field=IntegerField()), 0),
            )
        )

    @admin.display(description="event types")
    def types(self, obj):
        return ", ".join(obj.event_types)

    @admin.display(description="last delivery")
    def last_delivery(self, obj):
        return status_pill(obj.last_status) if obj.last_status else "–"

    @admin.display(description="failed attempts (24 h)", ordering="failure_count")
    def failures_24h(self, obj):
        return obj.failure_count

    def save_model(self, request, obj, form, change):
        """Through the services, as the API."""
        data = {name: form.cleaned_data.get(name) for name in SubscriptionForm.Meta.fields}
        secret = form.cleaned_data.get("secret") or None
        if change:
            changed = {name: data[name] for name in form.changed_data if name in data}
            services.subscription_update(subscription=obj, secret=secret, **changed)
            return
        saved, _ = services.subscription_create(secret=secret, **data)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.subscription_delete(subscription=obj)

    def delete_queryset(self, request, queryset):
        for subscription in queryset:
            services.subscription_delete(subscription=subscription)

    @admin.action(description="Send a test event", permissions=["change"])
    def send_test(self, request, queryset):
        apply_each(
            self,
            request,
            queryset,
            lambda s: services.subscription_test(subscription=s),
            done="Test event queued for {count} subscription(s): the relay sends it within a "
            "second (see its deliveries).",
            label=str,
        )

    @admin.action(description="Enable selected subscriptions", permissions=["change"])
    def enable_selected(self, request, queryset):
        apply_each(
            self,
            request,
            queryset,
            lambda s: services.subscription_update(subscription=s, enabled=True),
            done="{count} subscription(s) enabled.",
        )

    @admin.action(description="Disable selected subscriptions", permissions=["change"])
    def disable_selected(self, request, queryset):
        apply_each(
            self,
            request,
            queryset,
            lambda s: services.subscription_update(subscription=s, enabled=False),
            done="{count} subscription(s) disabled.",
        )


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ("number", "attempted", "outcome", "status_code", "duration", "error", "answer")
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0
    verbose_name_plural = "Attempts"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    attempted = time_column("attempted_at", "at")

    @admin.display(description="outcome")
    def outcome(self, obj):
        return status_pill("succeeded" if obj.is_success else "failed")

    @admin.display(description="duration")
    def duration(self, obj):
        return hodei_ms(obj.duration_ms)

    @admin.display(description="answer (first KiB)")
    def answer(self, obj):
        return format_html('<pre class="hodei-answer">{}</pre>', obj.response_body)


class SubscriptionListFilter(admin.SimpleListFilter):
    """Deliveries by subscription, the choices from the (small) subscription table: the
    default filter's SELECT DISTINCT would scan every delivery."""

    title = "subscription"
    parameter_name = "subscription"

    def lookups(self, request, model_admin):
        return [(str(s.pk), str(s)) for s in Subscription.objects.order_by("url")]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset if value is None else queryset.filter(subscription_id=value)


class EventTypeFilter(admin.SimpleListFilter):
    title = "event type"
    parameter_name = "type"

    def lookups(self, request, model_admin):
        return [(name, name) for name in sorted(EVENT_TYPES)]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset if value is None else queryset.filter(event__type=value)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """Deliveries are history: nobody edits one. Operators redeliver (the ``change``
    permission); viewers look."""

    # Fits a 1400 px screen; the rest (answers, errors, the body) is on its page.
    list_display = (
        "id",
        "subscription_link",
        "event_type",
        "status_badge",
        "attempts",
        "next_attempt",
        "created",
    )
    Media = WebhooksMedia
    list_select_related = ("subscription", "event")
    list_filter = ("status", SubscriptionListFilter, EventTypeFilter)
    ordering = ("-id",)
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    actions = ("redeliver_selected",)
    inlines = [DeliveryAttemptInline]
    fields = (
        "id",
        "subscription_link",
        "event_type",
        "status_badge",
        "attempt_count",
        "last_status_code",
        "last_error",
        "next_attempt",
        "give_up",
        "created",
        "finished",
        "message",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_redeliver_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("webhooks.change_delivery")

    subscription_link = link_column("subscription", "subscription")

    @admin.display(description="event")
    def event_type(self, obj):
        return format_html("{} <span class='hodei-muted'>#{}</span>", obj.event.type, obj.event_id)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return status_pill(obj.status)

    @admin.display(description="attempts", ordering="attempt_count")
    def attempts(self, obj):
        """How many, and how the last one ended (its status code, or why none)."""
        if not obj.attempt_count:
            return "0"
        last = obj.last_status_code or obj.last_error.split(":")[0][:30]
        return format_html('{} <span class="hodei-muted">· {}</span>', obj.attempt_count, last)

    @admin.display(description="next attempt")
    def next_attempt(self, obj):
        if obj.status != DeliveryStatus.PENDING:
            return "–"
        return moment(obj.next_attempt_at, compact=True)

    give_up = time_column("give_up_at", "retried until")
    created = time_column("created_at", "created", compact=True, sortable=True)
    finished = time_column("finished_at", "finished", compact=True, sortable=True)

    @admin.display(description="body sent")
    def message(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.event.as_message(), indent=2))

    @admin.action(description="Redeliver selected deliveries", permissions=["redeliver"])
    def redeliver_selected(self, request, queryset):
        apply_each(
            self,
            request,
            queryset,
            lambda d: services.delivery_redeliver(delivery=d),
            done="{count} delivery(ies) queued again: the relay sends them within a second.",
            label=str,
        )
