from django.apps import AppConfig


class PipelinesConfig(AppConfig):
    """Pipeline runs: a pipeline's jobs run as a DAG over their dependencies."""

    name = "pipelines"
    verbose_name = "Pipeline runs"

    def ready(self) -> None:
        from orchestrator import hooks as orchestrator_hooks
        from pipelines import services
        from workermanager import hooks as workermanager_hooks

        # A run advances when one of its executions changes, and resumes with its pipeline.
        workermanager_hooks.execution_changed.connect(services.on_execution_changed)
        orchestrator_hooks.pipeline_changed.connect(services.on_pipeline_changed)
        # A pending job of a run explains its wait with the jobs it needs.
        workermanager_hooks.explain_pending.connect(services.explain_pending)
