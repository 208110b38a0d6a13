"""Shared fixtures.

API tests talk to each service through its own URLconf (``orch``, ``sched``, ``wm``
clients), exactly as the three processes serve them. Tests that need real processes use
``live_db_url`` to point them at the test database."""

import os
import shutil
import tempfile

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import token_create
from accounts.roles import OPERATORS, VIEWERS
from agent.loop import Agent, AgentConfig
from agent.sandbox import SandboxConfig, probe
from agent.transport_db import DatabaseTransport
from hodei.lib.env import database_url_from_settings
from telemetry import metrics
from tests.factories import UserFactory, logged_in, role_user
from workermanager.announcements import announcements


class ServiceClient(APIClient):
    """An API client bound to one service's URLconf."""

    def __init__(self, service: str, **kwargs):
        super().__init__(**kwargs)
        self.urlconf = f"hodei.urls.{service}"

    def request(self, **kwargs):
        with override_settings(ROOT_URLCONF=self.urlconf):
            return super().request(**kwargs)


def client_for(service: str, user=None) -> ServiceClient:
    client = ServiceClient(service)
    if user is not None:
        _, raw = token_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def admin_user(db):
    return UserFactory(username="root", is_superuser=True, is_staff=True)


@pytest.fixture
def orch(admin_user) -> ServiceClient:
    return client_for("orchestrator", admin_user)


@pytest.fixture
def sched(admin_user) -> ServiceClient:
    return client_for("scheduler", admin_user)


@pytest.fixture
def wm(admin_user) -> ServiceClient:
    return client_for("workermanager", admin_user)


@pytest.fixture(autouse=True)
def no_listening_thread_left():
    """A long-poll claim starts this process's listening thread (its own connection);
    it ends with the test that started it, so nothing holds the test database open."""
    yield
    announcements.stop()


@pytest.fixture(autouse=True)
def per_second_schedules(settings):
    """Tests fire schedules every second or two to run fast; production's minimum
    interval (10 s) is tested on its own (tests/scheduler/test_quotas.py)."""
    settings.HODEI_MIN_SCHEDULE_INTERVAL_SECONDS = 1


@pytest.fixture
def operator_user(db):
    return role_user(OPERATORS)


@pytest.fixture
def operator(operator_user):
    """An admin session of a user in the operators group."""
    return logged_in(operator_user)


@pytest.fixture
def viewer(db):
    """An admin session of a user in the viewers group."""
    return logged_in(role_user(VIEWERS))


@pytest.fixture
def make_client(db):
    """make_client(service, user=None, perms=()) -> a client for a user holding ``perms``
    (``"app_label.codename"`` strings); ``user=None`` with no perms is anonymous."""

    def make(service: str, *, user=None, perms: tuple[str, ...] = (), anonymous=False):
        if anonymous:
            return ServiceClient(service)
        user = user or UserFactory()
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        return client_for(service, user)

    return make


# The isolation agents run with in tests: the sandbox wherever it works (as in
# production), else none; tests of the sandbox itself skip with the probe's reason.
SANDBOX_PROBLEM = probe(SandboxConfig())
ISOLATION = "none" if SANDBOX_PROBLEM else "sandbox"


@pytest.fixture
def workdir_root():
    """Where agents make working directories: a fresh directory the sandbox user can
    reach (pytest's own tmp_path is readable by its owner only)."""
    root = tempfile.mkdtemp(prefix="hodei-test-runs-")
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_agent(db, workdir_root):
    """An in-process agent, driven one step at a time by the test."""
    agents = []

    def make(**overrides) -> Agent:
        options = dict(
            type="default",
            name=f"test-agent-{len(agents)}",
            concurrency=2,
            heartbeat_seconds=0.2,
            poll_seconds=0.05,
            kill_grace_seconds=0.5,
            shutdown_grace_seconds=0.5,
            workdir_root=workdir_root,
            isolation=ISOLATION,
        )
        options.update(overrides)
        agent = Agent(AgentConfig(**options), DatabaseTransport())
        agent.register()
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.shutdown()
    # An agent batches metrics for its heartbeat; this test process is not an agent.
    metrics.buffer.batched = False
    metrics.buffer.take()


@pytest.fixture(scope="session")
def live_db_url(django_db_setup, django_db_blocker) -> str:
    with django_db_blocker.unblock():
        return database_url_from_settings(connection.settings_dict)


@pytest.fixture(scope="session")
def child_env(live_db_url) -> dict:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=live_db_url,
        HODEI_DEV="1",
        HODEI_HEARTBEAT_SECONDS="0.5",
        HODEI_POLL_SECONDS="0.2",
        HODEI_ISOLATION=ISOLATION,
        PYTHONUNBUFFERED="1",
    )
    return env


def pytest_collection_modifyitems(config, items):
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)
