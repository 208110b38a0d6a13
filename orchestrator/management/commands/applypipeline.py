from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from hodei.exceptions import HodeiError
from orchestrator import definitions


class Command(BaseCommand):
    help = (
        "Apply a pipeline document (YAML or JSON; docs/pipelines.md) to the pipeline of its "
        "name, creating it if there is none: print what changes (added, changed, removed "
        "jobs) and apply it atomically. --dry-run only prints. - reads standard input."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="The document, or - for standard input.")
        parser.add_argument("--dry-run", action="store_true", help="Print; change nothing.")

    def handle(self, *args, file, dry_run, **options):
        try:
            text = self.stdin.read() if file == "-" else Path(file).read_text()
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}") from None
        try:
            document = definitions.parse(text)
            if dry_run:
                target = definitions.pipeline_named(document.get("name"))
                result = definitions.plan(document, pipeline=target)
            else:
                result = definitions.apply(document)
        except HodeiError as exc:
            problems = [
                f"  {field}: {'; '.join(msgs)}" for field, msgs in (exc.fields or {}).items()
            ]
            raise CommandError("\n".join([exc.message, *problems])) from None
        self.stdout.write(describe(result, dry_run=dry_run))


def describe(result, *, dry_run: bool) -> str:
    """What changed (or would): the pipeline, then + added, ~ changed, - removed jobs."""
    head = f"pipeline {result.name}"
    if result.created:
        lines = [f"{head}: {'would be created' if dry_run else 'created'}"]
    elif result.pipeline_changes:
        lines = [f"{head}: {', '.join(sorted(result.pipeline_changes))} changed"]
    else:
        lines = [head]
    lines += [f"  + {name}" for name in result.added]
    lines += [f"  ~ {name} ({', '.join(fields)})" for name, fields in result.changed.items()]
    lines += [f"  - {name}" for name in result.removed]
    total = len(result.added) + len(result.changed) + len(result.removed)
    if result.is_noop:
        lines.append("no change")
    else:
        lines.append(f"{total} job change(s) {'would be applied' if dry_run else 'applied'}.")
    return "\n".join(lines)
