"""The import arrows between Hodei's apps run one way (README, "Layout"): an app imports
only the core and apps below it, never one above, so there is no cycle. A higher layer
hears from a lower one through a documented hook (workermanager.hooks), not an import.

Checked from the source (every import statement of every module), not at run time."""

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top. An app may import itself and the apps of earlier layers.
LAYERS = [
    {"telemetry"},  # the core: metrics primitives, tracing, redacted logs
    {"hodei"},  # the core: settings, API pieces, errors, admin pieces
    {"accounts"},  # tokens, roles
    {"events"},  # the outbox: events, their relay to NATS and to consumers
    {"orchestrator"},  # pipeline and job definitions
    {"workermanager"},  # workers, executions, logs, the agent protocol
    {"agent"},  # the worker agent
    {"pipelines"},  # pipeline runs: DAGs of executions
    {"scheduler"},  # schedules
    {"webhooks"},  # webhook subscriptions and deliveries of events
    {"console"},  # dashboard, scrape-time gauges, /metrics, landing page
]
LAYER_OF = {app: i for i, apps in enumerate(LAYERS) for app in apps}
# The composition root: each service's URLconf mounts the apps; gunicorn's settings stop
# the managed workers of the process they configure; the command line (manage.py) hands
# `runworker --server` to the agent before Django loads.
ROOTS = {"hodei/urls", "hodei/gunicorn_conf.py", "hodei/cli.py"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {name.split(".")[0] for name in names}


def modules():
    for app in LAYER_OF:
        for path in sorted((ROOT / app).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if "/migrations/" in relative or any(relative.startswith(r) for r in ROOTS):
                continue
            yield app, relative, path


@pytest.mark.parametrize(("app", "relative", "path"), list(modules()), ids=lambda v: str(v))
def test_an_app_imports_only_itself_the_core_and_apps_below(app, relative, path):
    upward = {
        other
        for other in imports_of(path) & set(LAYER_OF)
        if other != app and LAYER_OF[other] >= LAYER_OF[app]
    }
    assert not upward, f"{relative} imports {sorted(upward)}, which are not below {app}"


def test_every_app_of_the_project_has_a_layer():
    from django.conf import settings

    ours = {
        entry.split(".")[0]
        for entry in settings.INSTALLED_APPS
        if (ROOT / entry.split(".")[0]).is_dir()
    }
    assert ours <= set(LAYER_OF), ours - set(LAYER_OF)


PURE_AGENT_MODULES = [
    "agent/loop.py",
    "agent/process.py",
    "agent/output.py",
    "agent/transport.py",
    "agent/sandbox.py",
]
# The HTTP agent's own modules may also read the version (hodei/__init__.py, plain).
HTTP_AGENT_MODULES = ["agent/transport_http.py", "agent/cli.py"]


@pytest.mark.parametrize("relative", PURE_AGENT_MODULES)
def test_the_agent_loop_runs_without_django(relative):
    # An HTTP agent on another machine has no settings and no database.
    assert "django" not in imports_of(ROOT / relative)
    assert not imports_of(ROOT / relative) & (set(LAYER_OF) - {"agent", "telemetry"})


@pytest.mark.parametrize("relative", HTTP_AGENT_MODULES)
def test_the_http_agent_runs_without_django(relative):
    assert "django" not in imports_of(ROOT / relative)
    assert not imports_of(ROOT / relative) & (set(LAYER_OF) - {"agent", "telemetry", "hodei"})


def test_importing_the_http_agent_loads_no_django():
    # What the static checks above cannot see: what those imports import in turn.
    import subprocess
    import sys

    code = (
        "import sys, agent.cli, agent.transport_http; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'rest_framework', 'psycopg', 'workermanager', 'orchestrator')); "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True)
    assert done.returncode == 0, done.stdout + done.stderr
