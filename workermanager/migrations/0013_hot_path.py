from django.db import migrations


class Migration(migrations.Migration):
    """The execution hot path's storage settings (issue 16)."""

    dependencies = [("workermanager", "0012_execution_priority")]

    operations = []
