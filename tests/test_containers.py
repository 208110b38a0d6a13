"""The container files (Dockerfile, .dockerignore, compose.yaml), checked as files.

No Docker engine runs on the development machines: nothing here builds or starts the
image. What can be checked without one is: compose.yaml parses and runs every Procfile
process the same way (same program, service, port), health checks and start order are
declared, and every file, path, module and ``manage.py`` command the two files name
exists in the project."""

import fnmatch
import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent
API_PORTS = {"orchestrator": 8080, "scheduler": 8081, "workermanager": 8082}
LONG_RUNNING = (*API_PORTS, "qcluster", "relay", "agent")
ALL_SERVICES = ("db", "migrate", *LONG_RUNNING)
SHELLS = ("sh", "bash")


# Parsing helpers -------------------------------------------------------------------


def simple_commands(command) -> list[list[str]]:
    """The argv of each simple command in a compose/Dockerfile/Procfile command (a string
    or an exec-form list; ``sh -c SCRIPT`` is looked into), without leading ``VAR=value``
    assignments and ``exec``."""
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if len(argv) >= 3 and Path(argv[0]).name in SHELLS and argv[1] == "-c":
        argv = shlex.split(argv[2])
    commands, current = [], []
    for token in [*argv, "&&"]:
        if token in ("&&", "||", ";"):
            while current and (current[0] == "exec" or re.match(r"^\w+=", current[0])):
                current.pop(0)
            if current:
                commands.append(current)
            current = []
        else:
            current.append(token)
    return commands


def program(argv: list[str]) -> str:
    return Path(argv[0]).name


def manage_py_subcommands(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, token in enumerate(argv[:-1]) if Path(token).name == "manage.py"]


def option(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def procfile() -> dict[str, str]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = command.strip()
    return processes


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def dockerfile_args(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile() if kw == keyword]


def exec_form(args: str) -> list[str]:
    return yaml.safe_load(args) if args.startswith("[") else shlex.split(args)


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` (relative to the root) out of the build
    context: a pattern matches the path or one of its parents (``**/`` any depth)."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        for prefix in prefixes:
            tails = [prefix]
            if pattern.startswith("**/"):
                tails = ["/".join(prefix.split("/")[i:]) for i in range(len(prefix.split("/")))]
                pattern_tail = pattern[3:]
            else:
                pattern_tail = pattern
            if any(fnmatch.fnmatchcase(tail, pattern_tail) for tail in tails):
                ignored = not negate
    return ignored


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def hodei_services(services) -> dict:
    return {name: svc for name, svc in services.items() if name not in ("db", "proxy")}


# compose.yaml ----------------------------------------------------------------------


def test_compose_defines_every_service(services):
    assert set(ALL_SERVICES) <= set(services)


def test_every_procfile_process_has_a_compose_service_running_the_same_program(services):
    processes = procfile()
    assert set(processes) == set(LONG_RUNNING), "Procfile and this test disagree"
    for name, command in processes.items():
        assert name in services, f"Procfile process {name!r} has no compose service"
        [local] = simple_commands(command)
        [container] = simple_commands(services[name]["command"])
        assert program(container) == program(local), name
        assert manage_py_subcommands(container) == manage_py_subcommands(local), name


def test_api_services_run_gunicorn_with_their_service_and_port(services):
    processes = procfile()
    for name, port in API_PORTS.items():
        [local] = simple_commands(processes[name])
        [container] = simple_commands(services[name]["command"])
        assert program(container) == "gunicorn"
        assert container[1] == local[1] == "hodei.wsgi"
        assert option(container, "-c") == option(local, "-c") == "hodei/gunicorn_conf.py"
        # Inside a container the service must listen on every interface, on the seed's
        # port (the Procfile's default for it).
        assert option(container, "--bind") == f"0.0.0.0:{port}"
        procfile_port = re.search(r":-(\d+)\}$", option(local, "--bind")).group(1)
        assert procfile_port == str(port)
        assert f"HODEI_SERVICE={name}" in processes[name]
        assert environment(services[name])["HODEI_SERVICE"] == name


def test_qcluster_and_agent_commands(services):
    [qcluster] = simple_commands(services["qcluster"]["command"])
    assert qcluster[:3] == ["python", "manage.py", "qcluster"]
    [agent] = simple_commands(services["agent"]["command"])
    assert agent[:3] == ["python", "manage.py", "runworker"]
    assert option(agent, "--type") and option(agent, "--name")


def test_the_seeds_ports_are_published_by_the_buffering_proxy_only(services):
    published = [
        tuple(int(p) for p in str(mapping).rsplit(":", 2)[-2:])
        for name, svc in services.items()
        for mapping in svc.get("ports", [])
        if name == "proxy"
    ]
    assert sorted(published) == [(p, p) for p in sorted(API_PORTS.values())]
    assert all(not svc.get("ports") for name, svc in services.items() if name != "proxy")
    for name, port in API_PORTS.items():
        assert services[name]["expose"] == [str(port)]
    proxy = services["proxy"]
    env = environment(proxy)
    for name, port in API_PORTS.items():
        assert env[f"HODEI_{name.upper()}_UPSTREAM"] == f"{name}:{port}"
    assert "./deploy/nginx/templates:/etc/nginx/templates:ro" in proxy["volumes"]
    assert (ROOT / "deploy/nginx/templates/hodei.conf.template").exists()
    for name in API_PORTS:
        assert proxy["depends_on"][name]["condition"] == "service_healthy"


def test_long_running_services_have_a_healthcheck_or_wait_for_a_healthy_db(services):
    for name in LONG_RUNNING:
        svc = services[name]
        healthcheck = svc.get("healthcheck") or {}
        has_healthcheck = bool(healthcheck.get("test")) and not healthcheck.get("disable")
        waits_for_db = (svc.get("depends_on") or {}).get("db", {}).get("condition") == (
            "service_healthy"
        )
        assert has_healthcheck or waits_for_db, name


def test_api_healthchecks_probe_their_own_health_endpoint(services):
    for name, port in API_PORTS.items():
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD" and program(test[1:]) == "python"
        assert f"http://127.0.0.1:{port}/health" in " ".join(test)


def test_db_is_postgres_15_with_pg_isready_and_a_volume(compose, services):
    db = services["db"]
    assert db["image"].startswith("postgres:15")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    volume = db["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]


def test_migrate_runs_once_before_everything_else(services):
    migrate = services["migrate"]
    assert migrate.get("restart", "no") == "no"
    assert ["python", "manage.py", "migrate", "--no-input"] in simple_commands(migrate["command"])
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    for name in LONG_RUNNING:
        depends_on = services[name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name
        assert depends_on["db"]["condition"] == "service_healthy", name


def test_hodei_services_share_one_image_and_their_environment(services):
    hodei = hodei_services(services)
    assert {svc["image"] for svc in hodei.values()} == {services["orchestrator"]["image"]}
    assert all(svc["build"] == "." for svc in hodei.values())
    for name, svc in hodei.items():
        env = environment(svc)
        # Required, with a clear message when missing (compose's ${VAR:?message}).
        assert re.fullmatch(r"\$\{HODEI_SECRET_KEY:\?.+\}", env["SECRET_KEY"]), name
        assert env["DATABASE_URL"] == "postgres://hodei:hodei@db:5432/hodei", name
        hosts = env["ALLOWED_HOSTS"].split(",")
        # 127.0.0.1: the health checks; localhost: the published ports; the service
        # names: calls between containers.
        assert {"localhost", "127.0.0.1", *API_PORTS} <= set(hosts), name


# Dockerfile ------------------------------------------------------------------------


def test_dockerfile_uses_a_slim_python_base():
    [base] = dockerfile_args("FROM")
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", base), base


def test_dockerfile_runs_as_a_non_root_user():
    users = dockerfile_args("USER")
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in ("root", "0")
    keywords = [kw for kw, _ in dockerfile()]
    assert keywords.index("USER") < keywords.index("CMD")


def test_dockerfile_collects_static_files_and_installs_without_dev_extras():
    runs = dockerfile_args("RUN")
    collect = [run for run in runs if "manage.py collectstatic" in run]
    assert collect and "--noinput" in collect[0]
    installs = [run for run in runs if "pip install ." in run]
    assert installs and not any("[dev]" in run for run in runs)


def test_dockerfile_environment():
    env = " ".join(dockerfile_args("ENV"))
    assert "PYTHONUNBUFFERED=1" in env
    assert "HODEI_VAR_DIR=" in env
    # The processes run from the source tree (settings find manage.py, templates/ and
    # static/ next to hodei/), not from the installed copy in site-packages.
    [workdir] = dockerfile_args("WORKDIR")
    assert f"PYTHONPATH={workdir}" in env


def test_dockerfile_copies_only_existing_files_that_reach_the_build_context():
    copies = [exec_form(args) for args in dockerfile_args("COPY")]
    assert copies
    for argv in copies:
        if any(arg.startswith("--from") for arg in argv):
            continue
        *sources, _destination = [arg for arg in argv if not arg.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            if source != ".":
                assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"


def test_build_context_keeps_what_the_image_needs_and_drops_local_state():
    needed = [
        "manage.py",
        "pyproject.toml",
        "README.md",  # pyproject.toml's readme: `pip install .` reads it
        "hodei/wsgi.py",
        "hodei/gunicorn_conf.py",
        "hodei/settings.py",
        "agent/management/commands/runworker.py",
        "scheduler/management/commands/qcluster.py",
        "templates",
        "static",
    ]
    for path in needed:
        assert (ROOT / path).exists(), path
        assert not dockerignored(path), f"{path} is excluded by .dockerignore"
    for path in (".venv", "var", ".git", "artifacts", "hodei/__pycache__/x.pyc"):
        assert dockerignored(path), f"{path} reaches the build context"


# Commands, modules and paths named by both files -------------------------------------


def all_commands(services) -> list[list[str]]:
    commands = []
    for svc in services.values():
        if "command" in svc:
            commands += simple_commands(svc["command"])
    for args in dockerfile_args("RUN") + dockerfile_args("CMD"):
        commands += simple_commands(exec_form(args))
    return commands


def test_every_manage_py_subcommand_exists(services):
    known = get_commands()
    called = {sub for argv in all_commands(services) for sub in manage_py_subcommands(argv)}
    assert {"migrate", "collectstatic", "qcluster", "runworker"} <= called
    assert called <= set(known), called - set(known)
    # qcluster must be Hodei's (with the schedule ticker), not plain django-q2's.
    assert known["qcluster"] == "scheduler"


def test_gunicorn_entrypoints_and_paths_exist(services):
    gunicorns = [argv for argv in all_commands(services) if program(argv) == "gunicorn"]
    assert len(gunicorns) == 4  # the three services and the Dockerfile's default CMD
    for argv in gunicorns:
        module = argv[1].split(":")[0]
        wsgi = ROOT / (module.replace(".", "/") + ".py")
        assert wsgi.is_file() and "application" in wsgi.read_text(), module
        assert (ROOT / option(argv, "-c")).is_file()
    for argv in all_commands(services):
        for token in argv:
            if re.fullmatch(r"[\w/]+\.py", token):
                assert (ROOT / token).is_file(), token


def test_the_image_has_bubblewrap_and_the_agent_may_use_it(services):
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "bubblewrap" in dockerfile
    agent = services["agent"]
    # Root to switch commands to uid 65534; profiles that allow user namespaces.
    assert agent["user"] == "root"
    assert {"seccomp=unconfined", "apparmor=unconfined"} <= set(agent["security_opt"])
    assert "DATABASE_URL" in agent["environment"]  # the database agent (trusted host)
