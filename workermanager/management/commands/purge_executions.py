import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from hodei.exceptions import HodeiError
from hodei.lib.durations import parse_duration
from workermanager.retention import PurgeResult, executions_purge

MAX_BATCH_SIZE = 10_000
PROGRESS_EVERY_SECONDS = 1.0


def parse_age(value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise CommandError(f"--older-than {exc}") from None


class Command(BaseCommand):
    help = (
        "Delete finished executions and their logs past retention, in small batches (what "
        "the periodic task hodei.purge_executions does), printing progress (a line a "
        "second; every batch with -v 2; none with -v 0). Queued and running executions are "
        "never deleted."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            default=None,
            metavar="AGE",
            help=(
                "Delete finished executions older than this (7d, 12h, 90m, 2w, 3600s), "
                "instead of each job's retention_days or HODEI_RETENTION_DAYS "
                f"(now {settings.HODEI_RETENTION_DAYS} days). Jobs' retention_count "
                "applies either way."
            ),
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would go; delete nothing."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=1000,
            help=f"Executions per transaction (1 to {MAX_BATCH_SIZE}, default 1000).",
        )

    def handle(self, *args, older_than, dry_run, batch_size, verbosity, **options):
        age = parse_age(older_than) if older_than is not None else None
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}.")
        if age is not None:
            scope = f"finished executions older than {older_than.strip()}"
        else:
            scope = (
                f"finished executions past retention (default {settings.HODEI_RETENTION_DAYS} "
                "days, or the job's own)"
            )
        mode = " (dry run: nothing is deleted)" if dry_run else ""
        if verbosity:
            self.stdout.write(f"Purging {scope}, {batch_size} per batch{mode}.")

        last_report = 0.0
        last_elapsed = 0.0

        def report(result: PurgeResult) -> None:
            nonlocal last_report, last_elapsed
            batch_ms = (result.elapsed_seconds - last_elapsed) * 1000
            last_elapsed = result.elapsed_seconds
            if verbosity >= 2:
                # Every batch, with how long it took (selecting it, and its transaction).
                self.stdout.write(f"{progress_line(result)} ({batch_ms:.0f} ms)")
            elif verbosity == 1 and (
                # A line a second at most: a million rows make a thousand batches.
                result.batches == 1 or time.monotonic() - last_report >= PROGRESS_EVERY_SECONDS
            ):
                last_report = time.monotonic()
                self.stdout.write(progress_line(result))
            self.stdout.flush()

        try:
            result = executions_purge(
                older_than=age, batch_size=batch_size, dry_run=dry_run, progress=report
            )
        except HodeiError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Done: {result}.")


def progress_line(result: PurgeResult) -> str:
    verb = "would delete" if result.dry_run else "deleted"
    return (
        f"batch {result.batches}: {verb} {result.executions} executions, "
        f"{result.logs} log rows, {result.elapsed_seconds:.1f} s, "
        f"{result.executions_per_second:.0f} executions/s"
    )
