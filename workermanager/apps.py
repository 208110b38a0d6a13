from django.apps import AppConfig


class WorkerManagerConfig(AppConfig):
    name = "workermanager"
    verbose_name = "Executions and managed workers"
