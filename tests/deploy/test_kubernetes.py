"""The Kubernetes manifests (deploy/kubernetes), checked offline.

No cluster is reachable from the development machines, so nothing here applies them.
What is checked: every file parses; every core object validates against the OpenAPI
schema of Kubernetes K8S_VERSION (kubernetes-validate, strict: unknown fields fail); the
KEDA ScaledObject validates against a JSON schema written from KEDA's documented spec
(keda_scaledobject.schema.json); and the manifests agree with each other and with the
project (Secret and ConfigMap keys, ports, probes, commands, the image's user, the
kubernetes provider's labels and API calls). If kubectl is installed, kustomize renders
the directory. No database is needed."""

import copy
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import kubernetes_validate
import pytest
import yaml

from workermanager.providers.kubernetes import KubernetesProvider

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
SCHEMA = json.loads((Path(__file__).parent / "keda_scaledobject.schema.json").read_text())
# The oldest Kubernetes these manifests target (and the schemas they are checked with).
K8S_VERSION = "1.30"
NAMESPACE = "hodei"
API_PORTS = {"orchestrator": 8080, "scheduler": 8081, "workermanager": 8082}
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
WORKLOADS = {"Deployment", "Job"}


def load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


KUSTOMIZATION = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
RESOURCE_FILES = [DEPLOY / name for name in KUSTOMIZATION["resources"]]
# Files kept beside the resources on purpose, outside kustomization.yaml.
EXAMPLE_FILES = [DEPLOY / "secrets.example.yaml", *sorted((DEPLOY / "optional").glob("*.yaml"))]
RESOURCES = [doc for path in RESOURCE_FILES for doc in load(path)]
EXAMPLE_SECRETS = {doc["metadata"]["name"]: doc for doc in load(DEPLOY / "secrets.example.yaml")}
OPTIONAL = [doc for path in EXAMPLE_FILES[1:] for doc in load(path)]


def objects(kind: str, docs=None) -> dict[str, dict]:
    return {
        d["metadata"]["name"]: d for d in (RESOURCES if docs is None else docs) if d["kind"] == kind
    }


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def containers(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def env(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def option(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def argv(container: dict) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


def named_port(container: dict, port) -> int:
    """A probe's or Service's port (a number or a port name) as a number."""
    if isinstance(port, int):
        return port
    by_name = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert port in by_name, f"no container port named {port!r} in {container['name']}"
    return by_name[port]


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def config_data() -> dict[str, str]:
    return objects("ConfigMap")["hodei-config"]["data"]


def allowed_hosts() -> list[str]:
    return [h.strip() for h in config_data()["ALLOWED_HOSTS"].split(",")]


def host_allowed(host: str) -> bool:
    """Django's ALLOWED_HOSTS matching: exact, or ".domain" for the domain and below."""
    host = host.rsplit(":", 1)[0] if re.search(r":\d+$", host) else host
    return any(
        host == pattern
        or (pattern.startswith(".") and (host.endswith(pattern) or host == pattern[1:]))
        for pattern in allowed_hosts()
    )


def api_deployment(service: str) -> tuple[dict, dict]:
    deployment = objects("Deployment")[f"hodei-{service}"]
    return deployment, pod_spec(deployment)["containers"][0]


def agent() -> tuple[dict, dict]:
    deployment = objects("Deployment")["hodei-agent"]
    return deployment, pod_spec(deployment)["containers"][0]


def scaled_object() -> dict:
    (scaled,) = objects("ScaledObject").values()
    return scaled


def trigger(name: str) -> dict:
    return {t["name"]: t for t in scaled_object()["spec"]["triggers"]}[name]


# Files, parsing and schemas --------------------------------------------------------


def test_kustomization_lists_existing_files_and_leaves_the_examples_out():
    assert RESOURCE_FILES and all(path.is_file() for path in RESOURCE_FILES)
    listed = {path.name for path in RESOURCE_FILES}
    assert "secrets.example.yaml" not in listed
    assert not any("optional" in name for name in KUSTOMIZATION["resources"])
    assert KUSTOMIZATION["namespace"] == NAMESPACE
    # The image can be overridden with kustomize (`images`) under the name the manifests use.
    assert {image["name"] for image in KUSTOMIZATION["images"]} == {"hodei"}
    # No Secret with values among the resources: they come from the operator.
    assert not objects("Secret")


@pytest.mark.parametrize("path", RESOURCE_FILES + EXAMPLE_FILES, ids=lambda p: p.name)
def test_file_parses_into_kubernetes_objects(path):
    docs = load(path)
    assert docs, f"{path.name} is empty"
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        assert doc["metadata"].get("name")


def test_the_pinned_kubernetes_version_has_schemas():
    # kubernetes-validate falls back to an older schema set when the exact one is
    # missing; make sure K8S_VERSION itself is shipped.
    assert f"{K8S_VERSION}.0" in kubernetes_validate.utils.all_versions()


ALL_DOCS = [
    (path.name, i, doc)
    for path in RESOURCE_FILES + EXAMPLE_FILES
    for i, doc in enumerate(load(path))
]


@pytest.mark.parametrize(
    "doc",
    [d for _, _, d in ALL_DOCS],
    ids=[f"{f}:{d['kind']}:{d['metadata']['name']}" for f, _, d in ALL_DOCS],
)
def test_object_validates(doc):
    if doc["kind"] == "ScaledObject":
        jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    elif doc["kind"] == "TriggerAuthentication":
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
        for ref in doc["spec"]["secretTargetRef"]:
            assert set(ref) == {"parameter", "name", "key"}
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _mutated(change) -> dict:
    doc = copy.deepcopy(scaled_object())
    change(doc["spec"])
    return doc


SCHEMA_MISTAKES = {
    "threshold as a YAML number": lambda s: s["triggers"][0]["metadata"].update(threshold=4),
    "no target name": lambda s: s["scaleTargetRef"].pop("name"),
    "misspelt field": lambda s: s.update(pollinginterval=15),
    "prometheus without query": lambda s: s["triggers"][0]["metadata"].pop("query"),
    "unknown metricType": lambda s: s["triggers"][0].update(metricType="Average"),
    "fallback with a Value trigger": lambda s: s.update(
        fallback={"failureThreshold": 3, "replicas": 2}
    ),
    "no triggers": lambda s: s.update(triggers=[]),
}


@pytest.mark.parametrize("change", SCHEMA_MISTAKES.values(), ids=SCHEMA_MISTAKES.keys())
def test_scaledobject_schema_catches_mistakes(change):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_mutated(change), SCHEMA, cls=jsonschema.Draft202012Validator)


# Metadata ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc", RESOURCES + OPTIONAL, ids=lambda d: f"{d['kind']}:{d['metadata']['name']}"
)
def test_objects_are_labelled_and_in_the_namespace(doc):
    labels = doc["metadata"].get("labels", {})
    assert labels.get("app.kubernetes.io/name") in ("hodei", "hodei-agent")
    assert labels.get("app.kubernetes.io/part-of") == "hodei"
    if doc["kind"] != "Namespace":
        assert doc["metadata"].get("namespace") == NAMESPACE
    if doc["kind"] in WORKLOADS:
        template_labels = doc["spec"]["template"]["metadata"]["labels"]
        assert template_labels.get("app.kubernetes.io/part-of") == "hodei"


@pytest.mark.parametrize("name", objects("Deployment"))
def test_deployment_selector_matches_its_pods_only(name):
    deployment = objects("Deployment")[name]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selects(selector, deployment["spec"]["template"]["metadata"]["labels"])
    others = [d for n, d in objects("Deployment").items() if n != name]
    assert not any(selects(selector, d["spec"]["template"]["metadata"]["labels"]) for d in others)


# References --------------------------------------------------------------------------


def references() -> list[tuple[str, str, str | None, str]]:
    """(kind, name, key or None for a whole object, where) for every Secret and ConfigMap
    that a resource or an optional file uses."""
    refs = []
    for doc in RESOURCES + OPTIONAL:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in WORKLOADS:
            for c in containers(pod_spec(doc)):
                for item in c.get("env", []):
                    source = item.get("valueFrom", {})
                    for field, kind in (
                        ("secretKeyRef", "Secret"),
                        ("configMapKeyRef", "ConfigMap"),
                    ):
                        if field in source:
                            refs.append((kind, source[field]["name"], source[field]["key"], where))
                for item in c.get("envFrom", []):
                    for field, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                        if field in item:
                            refs.append((kind, item[field]["name"], None, where))
        if doc["kind"] == "TriggerAuthentication":
            for ref in doc["spec"]["secretTargetRef"]:
                refs.append(("Secret", ref["name"], ref["key"], where))
        if doc["kind"] == "Ingress":
            for tls in doc["spec"].get("tls", []):
                refs.append(("TLS Secret", tls["secretName"], None, where))
    return refs


def test_every_secret_and_configmap_key_used_exists():
    refs = references()
    assert refs
    for kind, name, key, where in refs:
        if kind == "TLS Secret":
            continue  # the operator's certificate (docs/kubernetes.md)
        if kind == "Secret":
            assert name in EXAMPLE_SECRETS, f"{where} reads Secret {name}, not in the example"
            data = EXAMPLE_SECRETS[name]["stringData"]
        else:
            assert name in objects("ConfigMap"), f"{where} reads ConfigMap {name}"
            data = objects("ConfigMap")[name]["data"]
        assert key is None or key in data, f"{where} reads {kind} {name} key {key}"


def test_example_secrets_are_used_and_hold_no_values():
    used = {name for kind, name, _, _ in references() if kind == "Secret"}
    assert used == set(EXAMPLE_SECRETS)
    for secret in EXAMPLE_SECRETS.values():
        assert "data" not in secret  # stringData only: readable placeholders
        for key, value in secret["stringData"].items():
            assert "CHANGE-ME" in value, f"{secret['metadata']['name']}.{key} looks real"


def test_services_select_a_deployment_and_reach_its_port():
    deployments = objects("Deployment")
    for name, service in objects("Service").items():
        chosen = [
            d
            for d in deployments.values()
            if selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(chosen) == 1, f"Service {name} selects {len(chosen)} Deployments"
        container = pod_spec(chosen[0])["containers"][0]
        for port in service["spec"]["ports"]:
            # Same number on the Service and in the container: URLs such as
            # http://hodei-workermanager:8082 work inside the cluster as they do in compose.
            assert named_port(container, port["targetPort"]) == port["port"]


# The processes -------------------------------------------------------------------------


def compose_service(name: str) -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())["services"][name]


@pytest.mark.parametrize("service", API_PORTS)
def test_api_deployment_runs_the_service_as_compose_does(service):
    deployment, container = api_deployment(service)
    assert env(container)["HODEI_SERVICE"]["value"] == service
    assert container["command"] == compose_service(service)["command"]
    assert option(container["command"], "--bind") == f"0.0.0.0:{API_PORTS[service]}"
    assert objects("Service")[f"hodei-{service}"]["spec"]["ports"][0]["port"] == API_PORTS[service]
    assert deployment["spec"]["replicas"] >= 2


@pytest.mark.parametrize("service", API_PORTS)
def test_probes_ask_for_health_on_the_container_port(service):
    _, container = api_deployment(service)
    bind_port = int(option(container["command"], "--bind").rsplit(":", 1)[1])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/health"
        assert named_port(container, check["port"]) == bind_port
        # Without it the kubelet sends the pod IP as Host, which Django refuses (400).
        host = {h["name"]: h["value"] for h in check.get("httpHeaders", [])}.get("Host")
        assert host and host_allowed(host), f"{probe} Host header {host!r} not in ALLOWED_HOSTS"
    # Liveness gives a database outage longer than readiness does before restarting.
    live, ready = container["livenessProbe"], container["readinessProbe"]
    assert (
        live["periodSeconds"] * live["failureThreshold"]
        > ready["periodSeconds"] * ready["failureThreshold"]
    )


def test_qcluster_relay_and_migrate_run_what_compose_runs():
    for name in ("qcluster", "relay"):
        (container,) = pod_spec(objects("Deployment")[f"hodei-{name}"])["containers"]
        assert container["command"] == compose_service(name)["command"]
        assert "livenessProbe" not in container and "ports" not in container
    (migrate,) = pod_spec(objects("Job")["hodei-migrate"])["containers"]
    assert migrate["command"] == compose_service("migrate")["command"]
    script = shlex.split(migrate["command"][2])
    assert script[:3] == ["python", "manage.py", "migrate"] and "bootstrap" in script
    assert pod_spec(objects("Job")["hodei-migrate"])["restartPolicy"] == "Never"


def test_every_procfile_process_has_a_deployment():
    # `make run` runs the Procfile; the cluster must run the same processes.
    processes = [
        line.split(":", 1)[0]
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "relay" in processes
    assert {f"hodei-{name}" for name in processes} == set(objects("Deployment"))


def test_manage_py_commands_used_exist():
    from django.core.management import get_commands

    used = set()
    for doc in RESOURCES:
        if doc["kind"] in WORKLOADS:
            for c in containers(pod_spec(doc)):
                words = shlex.split(" ".join(argv(c)))
                used |= {words[i + 1] for i, w in enumerate(words[:-1]) if w == "manage.py"}
    assert used == {"migrate", "bootstrap", "qcluster", "relayevents"}
    assert used <= set(get_commands())


def test_processes_that_need_it_wait_for_migrations():
    for name, deployment in objects("Deployment").items():
        waits = [
            c
            for c in pod_spec(deployment).get("initContainers", [])
            if "migrate --check" in " ".join(argv(c))
        ]
        # The agent never touches the database; everything else must not run on an old schema.
        assert bool(waits) == (name != "hodei-agent"), name


# Security ----------------------------------------------------------------------------


def image_uid() -> int:
    return int(re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text()).group(1))


@pytest.mark.parametrize("name", [*objects("Deployment"), *objects("Job")])
def test_pods_run_unprivileged_with_resources(name):
    workload = {**objects("Deployment"), **objects("Job")}[name]
    spec = pod_spec(workload)
    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == image_uid()
    assert pod_security["seccompProfile"]["type"] == "RuntimeDefault"
    for c in containers(spec):
        assert c["image"] == "hodei:latest"
        security = c["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(c["resources"]["requests"])
        assert "memory" in c["resources"]["limits"]
        if security.get("readOnlyRootFilesystem"):
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert {"/tmp", "/var/lib/hodei"} <= mounts, "no writable var dir and /tmp"


def test_only_the_workermanager_and_qcluster_can_call_the_kubernetes_api():
    # The worker manager starts managed workers through the API; qcluster reconciles
    # worker pools (workermanager/pools.py), which start and stop them too.
    accounts = set()
    for name, workload in {**objects("Deployment"), **objects("Job")}.items():
        spec = pod_spec(workload)
        if name in ("hodei-workermanager", "hodei-qcluster"):
            assert spec["automountServiceAccountToken"] is True
            accounts.add(spec["serviceAccountName"])
        else:
            assert spec["automountServiceAccountToken"] is False, name
            assert "serviceAccountName" not in spec
    (account,) = accounts
    assert account in objects("ServiceAccount")
    (binding,) = objects("RoleBinding").values()
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
    ]
    role = objects("Role")[binding["roleRef"]["name"]]
    granted = {
        (res, verb) for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]
    }
    # What workermanager/providers/kubernetes.py calls (its test records the requests).
    needed = {
        ("pods", "create"),
        ("pods", "get"),
        ("pods", "delete"),
        ("secrets", "create"),
        ("secrets", "delete"),
    }
    assert granted == needed


def test_namespace_enforces_the_restricted_pod_security_standard():
    (namespace,) = objects("Namespace").values()
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# The agent and its autoscaling ----------------------------------------------------------


def test_agent_runs_in_http_mode_without_database_access():
    deployment, container = agent()
    variables = env(container)
    assert container["command"] == ["hodei-agent"]
    assert "DATABASE_URL" not in variables and "SECRET_KEY" not in variables
    assert not container.get("envFrom")
    assert not any(
        item.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "hodei-secrets"
        for item in variables.values()
    )
    assert (
        variables["HODEI_REGISTRATION_TOKEN"]["valueFrom"]["secretKeyRef"]["name"]
        == "hodei-agent-registration"
    )
    assert variables["HODEI_ISOLATION"]["value"] == "none"
    assert option(container["args"], "--server") == config_data()["HODEI_WORKERMANAGER_URL"]
    assert "--name" not in container["args"]  # the pod name, so that each replica is its own worker
    assert pod_spec(deployment)["shareProcessNamespace"] is True  # reaps commands' orphans


def test_agent_deployment_does_not_adopt_managed_worker_pods():
    selector = agent()[0]["spec"]["selector"]["matchLabels"]
    managed = SimpleNamespace(
        id="0190a4c2-0000-7000-8000-000000000001",
        name="managed-default-1",
        type="default",
        concurrency=1,
        labels={},
    )
    assert not selects(selector, KubernetesProvider(api_client=object()).labels(managed))


def test_scaledobject_scales_the_agent_deployment():
    scaled = scaled_object()
    target = scaled["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target.get("apiVersion", "apps/v1") == "apps/v1"
    assert target["name"] in objects("Deployment")
    deployment, container = agent()
    assert target["name"] == deployment["metadata"]["name"]
    # KEDA's HPA owns the replica count; a fixed one would be reset by every apply.
    assert "replicas" not in deployment["spec"]
    spec = scaled["spec"]
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec.get("idleReplicaCount", -1) < spec["minReplicaCount"]


def test_triggers_read_the_agent_type_queue_with_its_concurrency():
    _, container = agent()
    worker_type, concurrency = (
        option(container["args"], "--type"),
        option(container["args"], "--concurrency"),
    )
    depth, age = trigger("queue-depth"), trigger("queue-oldest-age")
    assert f'hodei_queue_depth{{worker_type="{worker_type}"}}' in depth["metadata"]["query"]
    assert (
        f'hodei_queue_oldest_age_seconds{{worker_type="{worker_type}"}}' in age["metadata"]["query"]
    )
    # One agent per `concurrency` executions: the per-replica target is the concurrency.
    assert depth["metricType"] == "AverageValue"
    assert float(depth["metadata"]["threshold"]) == float(concurrency)
    for t in (depth, age):
        assert t["type"] == "prometheus"
        # The gauges are identical on every service: without an aggregation, several
        # scraped targets would give KEDA several series (or a sum).
        assert t["metadata"]["query"].count("max(") == t["metadata"]["query"].count("hodei_")
        assert "or vector(0)" in t["metadata"]["query"]


def test_triggers_query_metrics_that_hodei_exports():
    # Read from the source rather than a scrape (which needs a database): the gauge names
    # as the collector declares them, wherever it lives.
    source = "\n".join(
        path.read_text()
        for package in ("console", "telemetry", "workermanager", "hodei")
        if (ROOT / package).is_dir()
        for path in (ROOT / package).rglob("*.py")
    )
    for name in ("queue-depth", "queue-oldest-age"):
        for metric in re.findall(r"\b(hodei_\w+)\{", trigger(name)["metadata"]["query"]):
            assert f'"{metric}"' in source, f"{metric} is not a metric Hodei defines"


def test_optional_trigger_authentication_is_for_prometheus_bearer_tokens():
    (auth,) = objects("TriggerAuthentication", OPTIONAL).values()
    assert [ref["parameter"] for ref in auth["spec"]["secretTargetRef"]] == ["bearerToken"]


# Configuration -----------------------------------------------------------------------


def test_configmap_agrees_with_the_manifests():
    data = config_data()
    assert all(isinstance(v, str) for v in data.values())
    assert data["HODEI_K8S_NAMESPACE"] == NAMESPACE
    assert data["HODEI_K8S_IMAGE"] == agent()[1]["image"]
    assert (
        data["HODEI_WORKERMANAGER_URL"]
        == f"http://hodei-workermanager:{API_PORTS['workermanager']}"
    )
    # Every provider setting the ConfigMap sets is one Hodei reads.
    from django.conf import settings

    for name in data:
        if name.startswith("HODEI_K8S_"):
            assert hasattr(settings, name), name
    assert data["HODEI_METRICS_PUBLIC"] == "0"
    for service in API_PORTS:
        assert host_allowed(f"hodei-{service}")
        assert host_allowed(f"hodei-{service}.{NAMESPACE}.svc.cluster.local")


def test_ingress_buffers_and_reaches_the_services():
    (ingress,) = objects("Ingress", OPTIONAL).values()
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-body-size"] == "1m"
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "on"
    assert notes["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    hosts = []
    for rule in ingress["spec"]["rules"]:
        hosts.append(rule["host"])
        assert host_allowed(rule["host"])
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            service = objects("Service")[backend["name"]]
            assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert len(set(hosts)) == len(API_PORTS)
    origins = config_data()["CSRF_TRUSTED_ORIGINS"].split(",")
    assert all(origin.startswith("https://") and origin[8:] in hosts for origin in origins)


# Rendering -----------------------------------------------------------------------------


@pytest.mark.skipif(
    not shutil.which("kubectl"), reason="kubectl (with its kustomize) not installed"
)
def test_kustomize_renders_with_an_image_override(tmp_path):
    work = tmp_path / "kubernetes"
    shutil.copytree(DEPLOY, work)
    kustomization = yaml.safe_load((work / "kustomization.yaml").read_text())
    kustomization["images"] = [
        {"name": "hodei", "newName": "registry.example.com/hodei", "newTag": "1.2.3"}
    ]
    (work / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    # An empty kubeconfig: rendering is local and must not look for a cluster.
    (tmp_path / "kubeconfig").write_text("")
    result = subprocess.run(
        ["kubectl", "kustomize", str(work)],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "KUBECONFIG": str(tmp_path / "kubeconfig"),
            "HOME": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert len(rendered) == len(RESOURCES)
    images = {
        c["image"]
        for doc in rendered
        if doc["kind"] in WORKLOADS
        for c in containers(pod_spec(doc))
    }
    assert images == {"registry.example.com/hodei:1.2.3"}
    for doc in rendered:
        if doc["kind"] not in KEDA_KINDS:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
