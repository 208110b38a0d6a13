from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_roles(apps, schema_editor):
    from accounts.roles import sync_roles

    # Permissions are normally created after all migrations; create them now so that
    # the groups can hold them on a fresh database.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    sync_roles(apps)


def remove_roles(apps, schema_editor):
    from accounts.roles import OPERATORS, VIEWERS

    apps.get_model("auth", "Group").objects.filter(name__in=[OPERATORS, VIEWERS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("orchestrator", "0001_initial"),
        ("scheduler", "0002_schedule_fires"),
        ("workermanager", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
