from django.contrib import admin, messages

from accounts.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "name", "created_at", "last_used_at", "revoked_at")
    list_select_related = ("user",)
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "user__username", "name")
    # revoked_at too: revoking is the action's (the model's) business, and clearing the
    # field in the form would reinstate a revoked token.
    readonly_fields = ("prefix", "user", "created_at", "last_used_at", "revoked_at")
    fields = ("prefix", "user", "name", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request):
        # A token is shown once, at creation: create them with `manage.py createtoken`.
        return False

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = 0
        for token in queryset:
            if token.revoked_at is not None:
                message = f"{token.prefix}… was already revoked."
                self.message_user(request, message, messages.WARNING)
                continue
            token.revoke()
            revoked += 1
        if revoked:
            self.message_user(request, f"Revoked {revoked} token(s).")
