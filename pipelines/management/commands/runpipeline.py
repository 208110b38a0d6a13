import time

from django.core.management.base import BaseCommand, CommandError

from hodei.exceptions import HodeiError
from hodei.lib.lookup import by_id_or_prefix
from orchestrator import definitions
from orchestrator.models import Pipeline
from pipelines import services
from pipelines.choices import FINISHED_RUN, RunTrigger

POLL_SECONDS = 0.2


class Command(BaseCommand):
    help = (
        "Start a run of a pipeline (by name, id, or the first 8+ characters of its id). With "
        "--follow, print each job's changes until the run ends and exit 0 only if it "
        "succeeded."
    )

    def add_arguments(self, parser):
        parser.add_argument("pipeline", help="Its name, id, or a unique prefix of its id.")
        parser.add_argument(
            "--env", action="append", default=[], metavar="K=V", help="A parameter (repeat)."
        )
        parser.add_argument("--follow", action="store_true")

    def handle(self, *args, pipeline, env, follow, **options):
        params = {}
        for item in env:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CommandError(f"--env takes K=V, got {item!r}")
            params[key] = value
        try:
            target = definitions.pipeline_named(pipeline) or (
                by_id_or_prefix(Pipeline.objects.all(), pipeline)
            )
            run = services.pipeline_run_start(pipeline=target, env=params, trigger=RunTrigger.CLI)
        except HodeiError as exc:
            raise CommandError(exc.message) from None
        if not follow:
            self.stdout.write(str(run.id))
            return
        self.stderr.write(f"run {run.id} of {target} started")
        raise SystemExit(follow_run(self, run))


def follow_run(command, run) -> int:
    """Print each job's state as it changes until the run ends; its exit status."""
    shown: dict[str, str] = {}
    while True:
        run.refresh_from_db()
        for job in services.run_jobs(run):
            if shown.get(job["job_id"]) != job["state"]:
                shown[job["job_id"]] = job["state"]
                execution = job["execution"]
                detail = (
                    f" (exit {execution.exit_code})" if execution and execution.exit_code else ""
                )
                command.stdout.write(f"{job['name']}: {job['state']}{detail}")
                command.stdout.flush()
        if run.status in FINISHED_RUN:
            command.stderr.write(f"run {run.id} {run.status}")
            return 0 if run.status == "succeeded" else 1
        time.sleep(POLL_SECONDS)
