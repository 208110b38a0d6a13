from django.contrib import admin

from accounts.models import ApiToken
from hodei.admin_tools import apply_each
from hodei.exceptions import InvalidTransition


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = (
        "prefix",
        "user",
        "name",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    list_select_related = ("user",)
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "user__username", "name")
    # revoked_at too: revoking is the action's (the model's) business, and clearing the
    # field in the form would reinstate a revoked token.
    readonly_fields = ("prefix", "user", "created_at", "last_used_at", "expires_at", "revoked_at")
    fields = ("prefix", "user", "name", "created_at", "last_used_at", "expires_at", "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request):
        # A token is shown once, at creation: create them with `manage.py createtoken`.
        return False

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        def revoke(token):
            if token.revoked_at is not None:
                raise InvalidTransition("it was already revoked.")
            token.revoke()

        apply_each(
            self,
            request,
            queryset,
            revoke,
            done="Revoked {count} token(s).",
            label=lambda token: f"{token.prefix}…",
        )
