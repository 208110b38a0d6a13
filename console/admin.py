"""django-q2's own admin pages are the engine's internals: its scheduled tasks are
Hodei's to write (a schedule added there would bypass Hodei's rules: no history, no
overlap policy, no exactly-once slot). Only superusers see them, under "Internals", and
nobody can add, change, delete or resubmit anything there."""

from django.contrib import admin
from django_q import admin as djq_admin
from django_q.models import Failure, OrmQ, Schedule, Success

ENGINE_ADMINS = {
    Schedule: djq_admin.ScheduleAdmin,
    Success: djq_admin.TaskAdmin,
    Failure: djq_admin.FailAdmin,
    OrmQ: djq_admin.QueueAdmin,
}


class InternalsMixin:
    actions = None

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


for model, engine_admin in ENGINE_ADMINS.items():
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, type(engine_admin.__name__, (InternalsMixin, engine_admin), {}))
