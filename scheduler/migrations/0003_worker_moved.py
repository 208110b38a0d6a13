"""The Worker model now belongs to the worker manager (workermanager 0005); its table
stays where it is."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("scheduler", "0002_schedule_fires"),
        ("workermanager", "0005_worker_moves_here"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="Worker")], database_operations=[]
        ),
    ]
