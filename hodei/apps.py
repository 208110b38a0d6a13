from django.contrib.admin.apps import AdminConfig


class HodeiAdminConfig(AdminConfig):
    """The admin, with Hodei's site: the operator's console and its dashboard."""

    default_site = "hodei.admin_site.HodeiAdminSite"
