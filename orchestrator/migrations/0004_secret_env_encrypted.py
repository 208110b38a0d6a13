"""Job secret variables are stored encrypted (hodei/lib/secrets.py): encrypt the values
stored in plaintext before, with the current HODEI_SECRETS_KEY."""

from django.db import migrations


def encrypt_stored(apps, schema_editor):
    from hodei.lib import secrets

    Job = apps.get_model("orchestrator", "Job")
    for job in Job.objects.exclude(secret_env={}).only("id", "secret_env"):
        stored = {
            name: value if secrets.is_encrypted(value) else secrets.encrypt(value)
            for name, value in job.secret_env.items()
        }
        if stored != job.secret_env:
            Job.objects.filter(pk=job.pk).update(secret_env=stored)


class Migration(migrations.Migration):
    dependencies = [("orchestrator", "0003_resource_limits")]

    operations = [migrations.RunPython(encrypt_stored, migrations.RunPython.noop)]
