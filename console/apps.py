from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class HodeiAdminConfig(admin_apps.AdminConfig):
    """Django's admin, with Hodei's site (the operator's console and its dashboard)."""

    default = False  # named explicitly in INSTALLED_APPS, in place of django.contrib.admin
    default_site = "console.admin_site.HodeiAdminSite"


class ConsoleConfig(AppConfig):
    default = True

    """The operator's console: the admin site and its dashboard, the landing page and
    /metrics. It sits above every app and reads them; no app imports it."""

    name = "console"
    verbose_name = "Console"
