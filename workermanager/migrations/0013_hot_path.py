from django.db import migrations

# lz4 TOAST compression for log chunks where the server has it (PostgreSQL 14 or later,
# built with lz4): it compresses several times faster than the default pglz, which was
# most of PostgreSQL's time when a command prints fast (docs/benchmarks.md, issue 16).
# Only chunks stored from now on are compressed with it; older ones stay readable.
LZ4_WHERE_AVAILABLE = """
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_settings
        WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)
    ) THEN
        ALTER TABLE workermanager_executionlog ALTER COLUMN message SET COMPRESSION lz4;
    END IF;
END $$;
"""
DEFAULT_COMPRESSION = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression') THEN
        ALTER TABLE workermanager_executionlog ALTER COLUMN message SET COMPRESSION DEFAULT;
    END IF;
END $$;
"""


class PostgreSQLOnly(migrations.RunSQL):
    """RunSQL that does nothing on other databases (SQLite has no TOAST)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    """The execution hot path's storage settings (issue 16)."""

    dependencies = [("workermanager", "0012_execution_priority")]

    operations = [PostgreSQLOnly(LZ4_WHERE_AVAILABLE, reverse_sql=DEFAULT_COMPRESSION)]
