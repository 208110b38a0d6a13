from django.apps import AppConfig
from django.db.models.signals import post_migrate


class WorkerManagerConfig(AppConfig):
    name = "workermanager"
    verbose_name = "Executions and workers"

    def ready(self):
        from hodei.periodic import ensure_periodic_tasks
        from workermanager import checks  # noqa: F401  (registers its system checks)

        post_migrate.connect(ensure_periodic_tasks, sender=self, dispatch_uid="hodei-periodic")
