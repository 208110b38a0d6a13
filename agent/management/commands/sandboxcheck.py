from django.core.management.base import BaseCommand

from agent.loop import AgentConfig
from agent.sandbox import probe


class Command(BaseCommand):
    help = (
        "Say whether this machine can run commands in the agent's sandbox (exit 0), or why "
        "not and how to fix it (exit 1). `make run` uses it to choose its agent's isolation."
    )

    def handle(self, *args, **options):
        problem = probe(AgentConfig.from_env(type="default", isolation="sandbox").sandbox)
        if problem:
            self.stderr.write(problem)
            raise SystemExit(1)
        self.stdout.write("sandbox: ok")
