"""The kubernetes managed-worker provider against a local stand-in for the API server.

No cluster is reachable from the development machines. FakeKubernetes answers the
core/v1 endpoints the provider uses the way the Kubernetes API documents them (201 with
the stored object on create, the object or a Status on delete, Status objects with
NotFound/AlreadyExists/Forbidden on errors) and records every request, so that the tests
see exactly what the official client sends. The pod the provider asks for is also
validated against the Kubernetes OpenAPI schema. No database is needed."""

import base64
import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import pytest
from kubernetes import client
from kubernetes.config import kube_config

from workermanager.providers import Launch, ProviderError
from workermanager.providers.kubernetes import (
    KubernetesProvider,
    pod_name,
    secret_name,
    valid_label,
)

NAMESPACE = "hodei-test"
IMAGE = "registry.example.com/hodei:1.2.3"
SERVER_URL = "http://hodei-workermanager:8082"
CREDENTIAL = "hodei_wk_0123456789abcdef"
PATH = re.compile(
    r"^/api/v1/namespaces/(?P<ns>[^/]+)/(?P<resource>pods|secrets)(?:/(?P<name>[^/]+))?$"
)


def status(code: int, reason: str, message: str, **details) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


class FakeKubernetes:
    """Pods and Secrets in memory, the requests made, and failures to inject."""

    def __init__(self):
        self.objects: dict[tuple[str, str, str], dict] = {}  # (resource, ns, name)
        self.requests: list[SimpleNamespace] = []
        self.failures: dict[tuple[str, str], int] = {}  # (method, resource) -> code
        self.lock = threading.Lock()

    def fail(self, method: str, resource: str, code: int) -> None:
        self.failures[(method, resource)] = code

    def pod(self, name: str) -> dict:
        return self.objects[("pods", NAMESPACE, name)]

    def calls(self, method=None, resource=None) -> list[SimpleNamespace]:
        return [
            r
            for r in self.requests
            if method in (None, r.method) and resource in (None, r.resource)
        ]

    def handle(self, method: str, url: str, body: dict | None) -> tuple[int, dict]:
        parts = urlsplit(url)
        match = PATH.match(parts.path)
        if not match:
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        ns, resource, name = match["ns"], match["resource"], match["name"]
        with self.lock:
            self.requests.append(
                SimpleNamespace(
                    method=method, resource=resource, namespace=ns, name=name,
                    query=parse_qs(parts.query), body=body,
                )
            )  # fmt: skip
            if (method, resource) in self.failures:
                return self._failure(self.failures[(method, resource)], method, resource, ns)
            if method == "POST" and name is None:
                return self._create(resource, ns, body)
            key = (resource, ns, name)
            if key not in self.objects:
                return 404, status(
                    404, "NotFound", f'{resource} "{name}" not found', name=name, kind=resource
                )
            if method == "GET":
                return 200, self.objects[key]
            if method == "DELETE":
                obj = self.objects.pop(key)
                if resource == "secrets":
                    return 200, status(
                        200, "", "", name=name, kind=resource, uid=obj["metadata"]["uid"]
                    )
                # A pod is deleted gracefully: the API returns it, marked for deletion.
                grace = int(parse_qs(parts.query).get("gracePeriodSeconds", ["30"])[0])
                obj["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=grace)
                return 200, obj
        return 405, status(405, "MethodNotAllowed", f"{method} is not supported")

    def _create(self, resource: str, ns: str, body: dict) -> tuple[int, dict]:
        name = body["metadata"]["name"]
        if (resource, ns, name) in self.objects:
            return 409, status(
                409,
                "AlreadyExists",
                f'{resource} "{name}" already exists',
                name=name,
                kind=resource,
            )
        obj = json.loads(json.dumps(body))
        obj["metadata"].update(
            namespace=ns, uid=str(uuid.uuid4()), resourceVersion="1", creationTimestamp=_now()
        )
        if resource == "secrets":
            # The API server stores stringData as base64 data and never returns it.
            data = obj.setdefault("data", {})
            for key, value in obj.pop("stringData", {}).items():
                data[key] = base64.b64encode(value.encode()).decode()
        else:
            obj["status"] = {"phase": "Pending", "qosClass": "Burstable"}
        self.objects[(resource, ns, name)] = obj
        return 201, obj

    def _failure(self, code: int, method: str, resource: str, ns: str) -> tuple[int, dict]:
        if code == 403:
            verb = {"POST": "create", "GET": "get", "DELETE": "delete"}[method]
            message = (
                f'{resource} is forbidden: User "system:serviceaccount:{ns}:hodei-workermanager" '
                f'cannot {verb} resource "{resource}" in API group "" in the namespace "{ns}"'
            )
            return 403, status(403, "Forbidden", message, kind=resource)
        return code, status(
            code, "InternalError", "Internal error occurred: etcdserver: request timed out"
        )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Handler(BaseHTTPRequestHandler):
    fake: FakeKubernetes

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        code, payload = self.server.fake.handle(
            self.command, self.path, json.loads(raw) if raw else None
        )
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def fake():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.fake = FakeKubernetes()
    # A short poll interval: shutdown() waits for the next poll.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    server.fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server.fake
    server.shutdown()
    server.server_close()


def api_client(url: str) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = url
    return client.ApiClient(configuration)


@pytest.fixture
def provider(fake) -> KubernetesProvider:
    p = KubernetesProvider(
        api_client=api_client(fake.url), namespace=NAMESPACE, image=IMAGE, server_url=SERVER_URL
    )
    p.min_poll_seconds = 0  # every is_alive() asks the API
    return p


def managed_worker(**overrides) -> SimpleNamespace:
    fields = dict(
        id=uuid.UUID("0190a4c2-7b1e-7c3d-8e4f-5a6b7c8d9e0f"),
        name="managed-default-5a6b7c8d9e0f",
        type="default",
        concurrency=3,
        labels={
            "gpu": "a100",
            "example.com/team": "ml",
            "bad key": "x",  # not a valid label key
            "zone": "eu west",  # not a valid label value
            "kubernetes.io/hostname": "node-1",  # Kubernetes' own domain
            "hodei.io/managed-worker": "spoofed",  # ours
        },
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


# start -------------------------------------------------------------------------------


def test_start_creates_the_secret_then_the_pod(fake, provider):
    managed = managed_worker()
    launch = provider.start(managed, credential=CREDENTIAL)

    assert launch == Launch(pid=None, host="managed-default-5a6b7c8d9e0f")
    assert [(r.method, r.resource, r.namespace) for r in fake.requests] == [
        ("POST", "secrets", NAMESPACE),
        ("POST", "pods", NAMESPACE),
    ]
    secret = fake.calls("POST", "secrets")[0].body
    assert secret["metadata"]["name"] == f"hodei-agent-{managed.id}" == secret_name(managed)
    assert "ownerReferences" not in secret["metadata"]
    # The same selector as the pod's finds it (cleanup by hand: docs/kubernetes.md).
    assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == "managed-worker"
    assert secret["metadata"]["labels"]["hodei.io/managed-worker"] == str(managed.id)
    assert secret["stringData"] == {"token": CREDENTIAL}
    assert secret["immutable"] is True
    kubernetes_validate.validate(secret, "1.30", strict=True)


def test_the_pod_runs_the_agent_with_its_credential(fake, provider):
    managed = managed_worker()
    provider.start(managed, credential=CREDENTIAL)
    pod = fake.calls("POST", "pods")[0].body
    kubernetes_validate.validate(pod, "1.30", strict=True)

    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    assert container["image"] == IMAGE
    assert container["command"] == ["hodei-agent"]
    assert container["args"][:8] == [
        "--server", SERVER_URL,
        "--type", "default",
        "--name", "managed-default-5a6b7c8d9e0f",
        "--concurrency", "3",
    ]  # fmt: skip
    # Every label reaches the agent, valid as a Kubernetes label or not.
    labels = [container["args"][i + 1] for i, a in enumerate(container["args"]) if a == "--label"]
    assert labels == [f"{k}={v}" for k, v in managed.labels.items()]
    env = {e["name"]: e for e in container["env"]}
    assert env["HODEI_AGENT_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": secret_name(managed),
        "key": "token",
    }
    assert env["HODEI_ISOLATION"]["value"] == "none"
    assert CREDENTIAL not in json.dumps(pod)  # only the Secret holds it


def test_the_pod_carries_the_valid_labels_and_ours(fake, provider):
    managed = managed_worker()
    provider.start(managed, credential=CREDENTIAL)
    labels = fake.calls("POST", "pods")[0].body["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "hodei-agent"
    assert labels["hodei.io/managed-worker"] == str(managed.id)  # not the spoofed one
    assert labels["gpu"] == "a100" and labels["example.com/team"] == "ml"
    for skipped in ("bad key", "zone", "kubernetes.io/hostname"):
        assert skipped not in labels


def test_settings_come_from_the_settings(fake, settings):
    settings.HODEI_K8S_NAMESPACE = "agents"
    settings.HODEI_K8S_IMAGE = "hodei:env"
    settings.HODEI_WORKERMANAGER_URL = "http://wm.example:8082"
    provider = KubernetesProvider(api_client=api_client(fake.url))
    provider.start(managed_worker(), credential=CREDENTIAL)
    pod = fake.calls("POST", "pods")[0]
    assert pod.namespace == "agents"
    assert pod.body["spec"]["containers"][0]["image"] == "hodei:env"
    assert pod.body["spec"]["containers"][0]["args"][1] == "http://wm.example:8082"


def test_defaults(settings):
    provider = KubernetesProvider(api_client=object())
    # hodei/settings.py's defaults; the server is where every managed worker goes.
    assert (provider.namespace, provider.image) == ("hodei", "hodei:latest")
    assert provider.server_url == settings.HODEI_WORKERMANAGER_URL


def test_get_provider_knows_it():
    from workermanager.providers import PROVIDERS, get_provider

    assert "kubernetes" in PROVIDERS
    assert isinstance(get_provider("kubernetes"), KubernetesProvider)
    with pytest.raises(ProviderError, match="Unknown worker provider"):
        get_provider("docker")


def outside_a_cluster(monkeypatch, kubeconfig: Path) -> None:
    """No in-cluster service host, and ``kubeconfig`` as the default kubeconfig. The
    client reads KUBECONFIG once, at import: its module constant is what counts (and
    pointing it here keeps the tests away from the user's own ~/.kube/config)."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))


def test_outside_a_cluster_it_reads_the_kubeconfig(fake, monkeypatch, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    outside_a_cluster(monkeypatch, kubeconfig)
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
                "users": [{"name": "fake", "user": {"token": "test-token"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )
    )
    provider = KubernetesProvider(namespace=NAMESPACE)
    assert provider.start(managed_worker(), credential=CREDENTIAL).host
    assert len(fake.calls("POST", "pods")) == 1


def test_no_configuration_at_all_is_a_provider_error(monkeypatch, tmp_path):
    outside_a_cluster(monkeypatch, tmp_path / "missing")
    provider = KubernetesProvider()  # constructing it does not need a configuration
    with pytest.raises(ProviderError, match="No Kubernetes configuration"):
        provider.start(managed_worker(), credential=CREDENTIAL)
    with pytest.raises(ProviderError, match="No Kubernetes configuration"):
        provider.stop(managed_worker(), grace_seconds=1)
    # These two answer rather than raise: "cannot tell", and the reason as text.
    assert provider.is_alive(managed_worker()) is None
    assert "No Kubernetes configuration" in provider.exit_reason(managed_worker())


@pytest.mark.parametrize("code, text", [(403, "cannot create resource"), (500, "etcdserver")])
def test_a_refused_pod_is_a_provider_error_and_leaves_no_secret(fake, provider, code, text):
    fake.fail("POST", "pods", code)
    with pytest.raises(ProviderError) as error:
        provider.start(managed_worker(), credential=CREDENTIAL)
    message = str(error.value)
    assert f"could not create pod {NAMESPACE}/managed-default-5a6b7c8d9e0f" in message
    assert str(code) in message and text in message
    assert "\n" not in message  # the API's message, not the client's dump
    assert [(r.method, r.resource) for r in fake.calls("DELETE")] == [("DELETE", "secrets")]
    assert not fake.objects


@pytest.mark.parametrize("code", [403, 500])
def test_a_refused_secret_is_a_provider_error_and_no_pod_is_made(fake, provider, code):
    fake.fail("POST", "secrets", code)
    with pytest.raises(ProviderError, match=f"could not create secret .*{code}"):
        provider.start(managed_worker(), credential=CREDENTIAL)
    assert not fake.calls("POST", "pods")


def test_an_existing_secret_is_an_error_not_overwritten(fake, provider):
    provider.start(managed_worker(), credential=CREDENTIAL)
    with pytest.raises(ProviderError, match="409.*already exists"):
        provider.start(managed_worker(), credential="another")
    assert len(fake.calls("POST", "pods")) == 1


def test_an_unreachable_api_is_a_provider_error():
    # A port nothing listens on (bound, then closed).
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    configuration.retries = 0
    provider = KubernetesProvider(api_client=client.ApiClient(configuration))
    with pytest.raises(ProviderError, match="unreachable"):
        provider.start(managed_worker(), credential=CREDENTIAL)
    assert provider.is_alive(managed_worker()) is None


# is_alive and exit_reason ---------------------------------------------------------------


@pytest.mark.parametrize(
    "phase, alive",
    [
        ("Pending", True),
        ("Running", True),
        ("Succeeded", False),
        ("Failed", False),
        ("Unknown", None),
    ],
)
def test_is_alive_follows_the_pod_phase(fake, provider, phase, alive):
    managed = managed_worker()
    provider.start(managed, credential=CREDENTIAL)
    fake.pod(pod_name(managed))["status"]["phase"] = phase
    assert provider.is_alive(managed) is alive
    get = fake.calls("GET", "pods")[-1]
    assert (get.namespace, get.name) == (NAMESPACE, pod_name(managed))


def test_a_pod_without_status_yet_is_unknown(fake, provider):
    managed = managed_worker()
    provider.start(managed, credential=CREDENTIAL)
    del fake.pod(pod_name(managed))["status"]
    assert provider.is_alive(managed) is None
    assert provider.exit_reason(managed) == f"pod {NAMESPACE}/{pod_name(managed)} Unknown"


def test_a_missing_pod_is_not_alive(provider):
    assert provider.is_alive(managed_worker()) is False


@pytest.mark.parametrize("code", [403, 500])
def test_is_alive_is_unknown_when_the_api_refuses(fake, provider, code):
    fake.fail("GET", "pods", code)
    # None: "cannot tell", so the worker manager falls back on heartbeats.
    assert provider.is_alive(managed_worker()) is None


def test_is_alive_asks_the_api_at_most_once_per_interval(fake, provider):
    managed = managed_worker()
    provider.start(managed, credential=CREDENTIAL)
    provider.min_poll_seconds = 60
    assert [provider.is_alive(managed) for _ in range(5)] == [True] * 5
    assert len(fake.calls("GET", "pods")) == 1


def test_exit_reason_tells_how_the_container_ended(fake, provider):
    managed = managed_worker()
    provider.start(managed, credential=CREDENTIAL)
    fake.pod(pod_name(managed))["status"] = {
        "phase": "Failed",
        "containerStatuses": [
            {
                "name": "agent",
                "image": IMAGE,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": 2,
                        "reason": "Error",
                        "message": "registration token rejected",
                    }
                },
            }
        ],
    }
    reason = provider.exit_reason(managed)
    assert reason == (
        f"pod {NAMESPACE}/{pod_name(managed)} Failed; container agent terminated: Error "
        "(exit code 2): registration token rejected"
    )


def test_exit_reason_tells_an_eviction_and_a_waiting_container(fake, provider):
    managed = managed_worker()
    provider.start(managed, credential=CREDENTIAL)
    fake.pod(pod_name(managed))["status"] = {
        "phase": "Failed",
        "reason": "Evicted",
        "message": "The node was low on resource: memory.",
    }
    assert "Failed; Evicted: The node was low on resource: memory." in provider.exit_reason(managed)
    fake.pod(pod_name(managed))["status"] = {
        "phase": "Pending",
        "containerStatuses": [
            {
                "name": "agent",
                "image": IMAGE,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}
                },
            }
        ],
    }
    assert provider.exit_reason(managed).endswith(
        "container agent waiting: ImagePullBackOff: Back-off pulling image"
    )


def test_exit_reason_of_a_missing_pod_or_a_failing_api(fake, provider):
    assert "not found" in provider.exit_reason(managed_worker())
    fake.fail("GET", "pods", 500)
    reason = provider.exit_reason(managed_worker())
    assert "500" in reason and "etcdserver" in reason  # told, not raised


# stop ----------------------------------------------------------------------------------


def test_stop_deletes_the_pod_with_the_grace_period_and_the_secret(fake, provider):
    managed = managed_worker()
    provider.start(managed, credential=CREDENTIAL)
    provider.stop(managed, grace_seconds=16.2)
    pod_delete, secret_delete = fake.calls("DELETE")
    assert (pod_delete.resource, pod_delete.name) == ("pods", pod_name(managed))
    assert pod_delete.query["gracePeriodSeconds"] == ["17"]  # rounded up, never cut short
    assert (secret_delete.resource, secret_delete.name) == ("secrets", secret_name(managed))
    assert not fake.objects
    assert provider.is_alive(managed) is False


def test_stop_is_idempotent(fake, provider):
    managed = managed_worker()
    provider.start(managed, credential=CREDENTIAL)
    provider.stop(managed, grace_seconds=5)
    provider.stop(managed, grace_seconds=5)  # both 404 now: fine
    provider.stop(managed_worker(id=uuid.uuid4(), name="never-started"), grace_seconds=5)
    assert len(fake.calls("DELETE")) == 6


def test_stop_never_asks_for_an_immediate_deletion(fake, provider):
    managed = managed_worker()
    provider.start(managed, credential=CREDENTIAL)
    provider.stop(managed, grace_seconds=0)
    assert fake.calls("DELETE", "pods")[0].query["gracePeriodSeconds"] == ["1"]


@pytest.mark.parametrize("resource", ["pods", "secrets"])
@pytest.mark.parametrize("code", [403, 500])
def test_stop_failures_are_provider_errors(fake, provider, resource, code):
    managed = managed_worker()
    provider.start(managed, credential=CREDENTIAL)
    fake.fail("DELETE", resource, code)
    with pytest.raises(ProviderError, match=f"could not delete {resource[:-1]} .*{code}"):
        provider.stop(managed, grace_seconds=5)


# names and labels --------------------------------------------------------------------------


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@pytest.mark.parametrize(
    "name",
    ["Managed_Default_ABC", "gpu.worker.1", "-leading-and-trailing-", "x" * 200, "ñandú", "___"],
)
def test_pod_names_are_dns_labels(name):
    result = pod_name(managed_worker(name=name))
    assert DNS_LABEL.match(result) and len(result) <= 63


def test_a_valid_name_is_kept_and_names_that_clean_up_alike_stay_apart():
    assert pod_name(managed_worker(name="managed-default-1")) == "managed-default-1"
    a = pod_name(managed_worker(name="Worker_A", id=uuid.uuid4()))
    b = pod_name(managed_worker(name="worker-a", id=uuid.uuid4()))
    c = pod_name(managed_worker(name="WORKER.A", id=uuid.uuid4()))
    assert b == "worker-a" and len({a, b, c}) == 3


@pytest.mark.parametrize(
    "key, value, ok",
    [
        ("gpu", "a100", True),
        ("example.com/team", "ml", True),
        ("tier", "", True),
        ("a" * 63, "b" * 63, True),
        ("a" * 64, "x", False),
        ("x", "b" * 64, False),
        ("bad key", "x", False),
        ("x", "has space", False),
        ("-x", "x", False),
        ("Example.com/team", "x", False),
        ("kubernetes.io/arch", "amd64", False),
        ("node.kubernetes.io/role", "x", False),
        ("k8s.io/x", "y", False),
        ("hodei.io/managed-worker", "x", False),
        ("x", 3, False),
    ],
)
def test_valid_label(key, value, ok):
    assert valid_label(key, value) is ok
