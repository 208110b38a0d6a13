from django.contrib import admin

from hodei import dashboard


class HodeiAdminSite(admin.AdminSite):
    site_header = "Hodei"
    site_title = "Hodei"
    index_title = "Operations console"

    def index(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "dashboard": dashboard.build()}
        return super().index(request, extra_context)
