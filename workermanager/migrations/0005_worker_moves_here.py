"""The Worker model moves from the scheduler app to the worker manager, which owns
registration, heartbeats, reaping and draining. Its table keeps its name (no data moves):
only Django's idea of which app owns it changes, and the content type (with the
permissions users and groups hold on workers) is renamed to follow it."""

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models

import hodei.lib.clock
import hodei.lib.ids


def rename_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="scheduler", model="worker").update(
        app_label="workermanager"
    )


def restore_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="workermanager", model="worker").update(
        app_label="scheduler"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("scheduler", "0002_schedule_fires"),
        ("workermanager", "0004_command_search_trigram"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Worker",
                    fields=[
                        (
                            "id",
                            models.UUIDField(
                                default=hodei.lib.ids.uuid7,
                                editable=False,
                                primary_key=True,
                                serialize=False,
                            ),
                        ),
                        ("name", models.CharField(max_length=200, unique=True)),
                        (
                            "type",
                            models.CharField(
                                max_length=64,
                                validators=[
                                    django.core.validators.RegexValidator(
                                        "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                                        "Use letters, digits, '.', '_' and '-', starting with "
                                        "a letter or digit.",
                                    )
                                ],
                            ),
                        ),
                        ("labels", models.JSONField(blank=True, default=dict)),
                        (
                            "capacity",
                            models.PositiveIntegerField(
                                default=1,
                                validators=[
                                    django.core.validators.MinValueValidator(1),
                                    django.core.validators.MaxValueValidator(1024),
                                ],
                            ),
                        ),
                        ("hostname", models.CharField(blank=True, default="", max_length=255)),
                        ("version", models.CharField(blank=True, default="", max_length=64)),
                        ("pid", models.PositiveIntegerField(blank=True, null=True)),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("online", "Online"),
                                    ("draining", "Draining"),
                                    ("offline", "Offline"),
                                ],
                                default="online",
                                max_length=16,
                            ),
                        ),
                        ("registered_at", models.DateTimeField(default=hodei.lib.clock.now)),
                        ("last_heartbeat_at", models.DateTimeField(blank=True, null=True)),
                        ("stopped_at", models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        "db_table": "scheduler_worker",
                        "ordering": ["-id"],
                        "indexes": [
                            models.Index(
                                fields=["status", "last_heartbeat_at"], name="worker_status_idx"
                            ),
                            models.Index(fields=["type", "-id"], name="worker_type_idx"),
                        ],
                    },
                ),
                migrations.AlterField(
                    model_name="execution",
                    name="worker",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="executions",
                        to="workermanager.worker",
                    ),
                ),
                migrations.AlterField(
                    model_name="managedworker",
                    name="worker",
                    field=models.ForeignKey(
                        blank=True,
                        help_text="The Worker row the agent registered as.",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="managed_by",
                        to="workermanager.worker",
                    ),
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(rename_content_type, restore_content_type),
    ]
