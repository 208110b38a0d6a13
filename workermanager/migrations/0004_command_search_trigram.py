"""A trigram index for the admin's search of executions by command text.

`command LIKE '%term%'` can use no B-tree index; on 10^6 executions a term that matches
nothing scanned the table for 2.3 s, 18 ms with this index (docs/benchmarks.md). It needs
the pg_trgm extension: where the database user may not create it, the migration goes on
without the index (search still works, only slower)."""

from django.db import migrations

CREATE = (
    "CREATE INDEX IF NOT EXISTS execution_command_trgm_idx "
    "ON workermanager_execution USING gin (upper(command) gin_trgm_ops)"
)


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SAVEPOINT hodei_trgm")
        try:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except Exception:
            cursor.execute("ROLLBACK TO SAVEPOINT hodei_trgm")
            return
        cursor.execute("RELEASE SAVEPOINT hodei_trgm")
        cursor.execute(CREATE)
        # Statistics of the indexed expression: without them the planner takes a common
        # term for a rare one and sorts every match (0.4 s) instead of walking the
        # primary key until a page is full (0.5 ms).
        cursor.execute("ANALYZE workermanager_execution")


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS execution_command_trgm_idx")


class Migration(migrations.Migration):
    dependencies = [("workermanager", "0003_admin_filter_indexes")]

    operations = [migrations.RunPython(create_index, drop_index)]
