from django.core.management.base import BaseCommand, CommandError

from hodei.exceptions import HodeiError
from hodei.lib.lookup import by_id_or_prefix
from workermanager.follow import exit_status, follow_and_report
from workermanager.models import Execution


class Command(BaseCommand):
    help = "Follow an execution's log until it ends; exit with its exit code."

    def add_arguments(self, parser):
        parser.add_argument(
            "execution_id", help="Its id, or the short id the admin shows (8+ characters)."
        )

    def handle(self, *args, execution_id, **options):
        try:
            execution = by_id_or_prefix(Execution.objects.all(), execution_id)
        except HodeiError as exc:
            raise CommandError(exc.message) from None
        execution = follow_and_report(self, execution)
        raise SystemExit(exit_status(execution))
