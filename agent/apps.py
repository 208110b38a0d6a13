from django.apps import AppConfig


class AgentConfig(AppConfig):
    """The worker agent: the process that claims executions and runs their commands."""

    name = "agent"
    verbose_name = "Worker agent"
