"""Hodei's system checks for dangerous settings."""

from django.core.management import call_command
from django.core.management.base import SystemCheckError

from hodei import checks
from tests.factories import WorkerFactory
from workermanager import checks as worker_checks


def ids(messages) -> set[str]:
    return {m.id for m in messages}


def test_debug_outside_development_is_an_error(settings):
    settings.DEBUG, settings.HODEI_DEV = True, False
    assert ids(checks.check_debug(None)) == {"hodei.E001"}
    settings.HODEI_DEV = True
    assert checks.check_debug(None) == []


def test_open_allowed_hosts_and_public_metrics_are_deploy_warnings(settings):
    settings.ALLOWED_HOSTS = ["*"]
    settings.HODEI_METRICS_PUBLIC = True
    assert ids(checks.check_allowed_hosts(None)) == {"hodei.W001"}
    assert ids(checks.check_metrics_public(None)) == {"hodei.W002"}
    settings.ALLOWED_HOSTS, settings.HODEI_METRICS_PUBLIC = ["hodei.example"], False
    assert checks.check_allowed_hosts(None) == checks.check_metrics_public(None) == []


def test_development_mode_is_a_deploy_warning(settings):
    settings.HODEI_DEV = True
    assert ids(checks.check_development_mode(None)) == {"hodei.W003"}


def test_several_agents_on_sqlite_are_a_warning(db):
    from django.db import connection

    WorkerFactory()
    assert worker_checks.check_sqlite_agents(None, databases=["default"]) == []
    WorkerFactory()
    found = ids(worker_checks.check_sqlite_agents(None, databases=["default"]))
    assert found == ({"hodei.W004"} if connection.vendor == "sqlite" else set())


def test_the_debug_error_stops_manage_py_check(settings):
    settings.DEBUG, settings.HODEI_DEV = True, False
    try:
        call_command("check")
    except SystemCheckError as exc:
        assert "hodei.E001" in str(exc)
    else:
        raise AssertionError("check passed with DEBUG on in production")
