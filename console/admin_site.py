from django.contrib import admin

from console import dashboard


class HodeiAdminSite(admin.AdminSite):
    site_header = "Hodei"
    site_title = "Hodei"
    index_title = "Operations console"
    # The navigation sidebar costs lists a third of a 1400 px screen; the breadcrumbs and
    # the index lead everywhere.
    enable_nav_sidebar = False

    def index(self, request, extra_context=None):
        extra_context = dict(extra_context or {})
        # The figures are about executions: shown to those who may see them (both roles).
        if request.user.has_perm("workermanager.view_execution"):
            extra_context["dashboard"] = dashboard.build()
        return super().index(request, extra_context)
