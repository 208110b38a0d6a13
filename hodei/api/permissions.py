from rest_framework.permissions import DjangoModelPermissions


class ModelPermissions(DjangoModelPermissions):
    """Django model permissions for the API, so the admin's groups govern it too.

    Unlike DRF's default, reading needs the ``view`` permission. A view's actions name
    the permission they need in ``action_permissions``: a verb on the view's model
    (``{"cancel": "change"}``) or a whole permission (``{"logs":
    "workermanager.view_executionlog"}``).
    """

    perms_map = {
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "POST": ["%(app_label)s.add_%(model_name)s"],
        "PUT": ["%(app_label)s.change_%(model_name)s"],
        "PATCH": ["%(app_label)s.change_%(model_name)s"],
        "DELETE": ["%(app_label)s.delete_%(model_name)s"],
    }

    def has_permission(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return False
        action = getattr(view, "action", None)
        verb = getattr(view, "action_permissions", {}).get(action)
        if verb is None:
            return super().has_permission(request, view)
        if "." in verb:
            return request.user.has_perm(verb)
        model = self._queryset(view).model
        perm = f"{model._meta.app_label}.{verb}_{model._meta.model_name}"
        return request.user.has_perm(perm)
