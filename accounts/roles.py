"""Hodei's two roles, as Django groups: the admin and the API both honour them."""

OPERATORS = "Hodei operators"
VIEWERS = "Hodei viewers"

# (app_label, model_name) -> what operators get (verbs, or custom codenames such as
# run_job); viewers get "view" on all.
OPERATOR_ACTIONS = {
    ("orchestrator", "pipeline"): ("add", "change", "delete", "view"),
    ("orchestrator", "job"): ("add", "change", "delete", "view"),
    ("scheduler", "schedule"): ("add", "change", "delete", "view"),
    # delete: a schedule's history goes with it (deleting a job with its schedules).
    ("scheduler", "schedulefire"): ("delete", "view"),
    ("workermanager", "worker"): ("add", "change", "view"),
    ("workermanager", "managedworker"): ("add", "change", "view"),
    # Pools start and stop managed workers on their own; delete: drain and remove one.
    ("workermanager", "workerpool"): ("add", "change", "delete", "view"),
    ("workermanager", "poolscaling"): ("view",),
    # Registration tokens let a machine join as an agent (and so receive the secret
    # variables of the jobs it claims): operators may make and revoke them.
    ("workermanager", "registrationtoken"): ("add", "change", "view"),
    ("workermanager", "execution"): ("add", "change", "view", "run_job", "run_command"),
    ("workermanager", "executionlog"): ("view",),
    ("pipelines", "pipelinerun"): ("change", "view"),
    ("webhooks", "subscription"): ("add", "change", "delete", "view"),
    # change: redeliver (deliveries are history otherwise).
    ("webhooks", "delivery"): ("change", "view"),
    ("webhooks", "deliveryattempt"): ("view",),
}


def sync_roles_after_migrate(**_kwargs) -> None:
    """After every ``migrate``: the roles follow this module (a permission added or a
    model moved between apps needs no migration of its own)."""
    from django.apps import apps
    from django.contrib.auth.management import create_permissions

    # Permissions are created after each app's migrations; the roles need all of them.
    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0)
    sync_roles(apps)


def sync_roles(apps) -> None:
    """Create the groups if missing and set their permissions (idempotent)."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    operators, _ = Group.objects.get_or_create(name=OPERATORS)
    viewers, _ = Group.objects.get_or_create(name=VIEWERS)
    operator_perms, viewer_perms = [], []
    for (app_label, model), actions in OPERATOR_ACTIONS.items():
        perms = {
            p.codename: p
            for p in Permission.objects.filter(
                content_type__app_label=app_label, content_type__model=model
            )
        }
        # An action is a verb ("change" -> change_job) or a custom codename ("run_job").
        codenames = [a if a in perms else f"{a}_{model}" for a in actions]
        operator_perms += [perms[c] for c in codenames if c in perms]
        if f"view_{model}" in perms:
            viewer_perms.append(perms[f"view_{model}"])
    operators.permissions.set(operator_perms)
    viewers.permissions.set(viewer_perms)
