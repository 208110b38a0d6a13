from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "API access"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        # Registers the bearer token scheme with drf-spectacular.
        from accounts import schema  # noqa: F401
        from accounts.roles import sync_roles_after_migrate

        post_migrate.connect(sync_roles_after_migrate, sender=self, dispatch_uid="hodei-roles")
