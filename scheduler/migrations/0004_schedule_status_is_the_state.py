"""A schedule's state is its status alone: `enabled` said "paused" a second time. A
disabled schedule that was not completed is paused."""

from django.db import migrations


def paused_from_enabled(apps, schema_editor):
    Schedule = apps.get_model("scheduler", "Schedule")
    Schedule.objects.filter(enabled=False, status="scheduled").update(status="paused")


class Migration(migrations.Migration):
    dependencies = [("scheduler", "0003_worker_moved")]

    operations = [
        migrations.RunPython(paused_from_enabled, migrations.RunPython.noop),
        migrations.RemoveField(model_name="schedule", name="enabled"),
    ]
