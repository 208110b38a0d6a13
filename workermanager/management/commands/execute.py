from django.core.management.base import BaseCommand, CommandError

from hodei.exceptions import HodeiError
from hodei.lib.lookup import by_id_or_prefix
from orchestrator.choices import CommandType
from orchestrator.models import Job
from workermanager.choices import Trigger
from workermanager.follow import exit_status, follow_and_report
from workermanager.services import execution_enqueue


class Command(BaseCommand):
    help = (
        "Queue an execution. With --follow, stream its log until it ends and exit with its "
        "exit code."
    )

    def add_arguments(self, parser):
        parser.add_argument("--command", dest="shell_command", default=None)
        parser.add_argument(
            "--job", default=None, help="Job id (or its first 8+ characters); supplies defaults."
        )
        parser.add_argument("--type", choices=CommandType.values, default=None)
        parser.add_argument("--worker-type", default=None)
        parser.add_argument("--timeout", type=int, default=None, help="Seconds.")
        parser.add_argument("--follow", action="store_true")

    def handle(self, *args, shell_command, job, type, worker_type, timeout, follow, **options):
        try:
            job_obj = by_id_or_prefix(Job.objects.all(), job) if job else None
            execution = execution_enqueue(
                job=job_obj,
                command=shell_command,
                type=type,
                worker_type=worker_type,
                timeout_seconds=timeout,
                trigger=Trigger.CLI,
            )
        except HodeiError as exc:
            raise CommandError(exc.message) from None
        if not follow:
            self.stdout.write(str(execution.id))
            return
        self.stderr.write(f"execution {execution.id} queued")
        execution = follow_and_report(self, execution)
        raise SystemExit(exit_status(execution))
