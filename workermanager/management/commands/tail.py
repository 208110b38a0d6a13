from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from workermanager.follow import exit_status
from workermanager.management.commands.execute import follow_and_report
from workermanager.models import Execution


class Command(BaseCommand):
    help = "Follow an execution's log until it ends; exit with its exit code."

    def add_arguments(self, parser):
        parser.add_argument("execution_id")

    def handle(self, *args, execution_id, **options):
        try:
            execution = Execution.objects.get(pk=execution_id)
        except (Execution.DoesNotExist, ValidationError) as exc:
            raise CommandError(f"No execution {execution_id!r}.") from exc
        execution = follow_and_report(self, execution)
        raise SystemExit(exit_status(execution))
