"""Managed workers as Kubernetes Pods: one Pod per managed worker, running ``hodei-agent``
in HTTP mode against the worker manager, with its credential in a Secret of its own.

The worker manager (and qcluster, which reconciles worker pools) needs a ServiceAccount
allowed to create, get and delete pods and to create and delete secrets in
``HODEI_K8S_NAMESPACE`` (deploy/kubernetes/rbac.yaml). The agents reach the worker
manager at HODEI_WORKERMANAGER_URL, and run HODEI_K8S_IMAGE.
Not run against a real cluster: tests/deploy/test_kubernetes_provider.py drives it
against a local HTTP server that answers the core/v1 endpoints it uses."""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid

import urllib3
from django.conf import settings
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from workermanager.providers import Launch, ProviderError

log = logging.getLogger("hodei.providers.kubernetes")

AGENT_UID = 10001  # the image's `hodei` user (Dockerfile)
TOKEN_KEY = "token"
# Each API call gets this long: a hung API server must not hang a web worker's thread.
REQUEST_TIMEOUT_SECONDS = 10
# Kubernetes' own pod-level grace for evictions and node drains (the agent's shutdown
# grace, 10 s, plus its kill grace, 5 s, with room to spare). stop() passes its own.
POD_GRACE_SECONDS = 30
AGENT_RESOURCES = client.V1ResourceRequirements(
    requests={"cpu": "100m", "memory": "256Mi"},
    limits={"memory": "1Gi"},
)

# Pod phase -> is_alive(). Any other phase ("Unknown": the node stopped reporting) -> None.
ALIVE_BY_PHASE = {"Pending": True, "Running": True, "Succeeded": False, "Failed": False}

LABEL_NAME = "app.kubernetes.io/name"
LABEL_WORKER = "hodei.io/managed-worker"
# Label domains a user label must not write into: Kubernetes' own and ours.
RESERVED_LABEL_DOMAINS = ("kubernetes.io", "k8s.io", "hodei.io")
_LABEL_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_POD_NAME_MAX = 63  # a DNS label: the pod's hostname is its name, cut at 63


def pod_name(managed) -> str:
    """A valid pod name for ``managed``: its name when that already is a DNS label, else
    a cleaned-up, shortened form with part of its id appended, so that two names that
    clean up alike still give two pods."""
    name = managed.name
    if len(name) <= _POD_NAME_MAX and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name):
        return name
    base = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "hodei-agent"
    suffix = uuid.UUID(str(managed.id)).hex[-10:]
    return f"{base[: _POD_NAME_MAX - len(suffix) - 1].rstrip('-')}-{suffix}"


def secret_name(managed) -> str:
    return f"hodei-agent-{uuid.UUID(str(managed.id))}"


def valid_label(key: str, value: str) -> bool:
    """Whether ``key: value`` is a valid Kubernetes label outside the reserved domains."""
    if not isinstance(key, str) or not isinstance(value, str):
        return False
    prefix, _, name = key.rpartition("/")
    if prefix:
        if len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix):
            return False
        if any(prefix == d or prefix.endswith("." + d) for d in RESERVED_LABEL_DOMAINS):
            return False
    return bool(_LABEL_PART.match(name)) and (value == "" or bool(_LABEL_PART.match(value)))


def _api_error(action: str, exc: Exception) -> ProviderError:
    """A ProviderError that says what failed and why, with the API's own message (the
    body of an error is a Status object) rather than the client's multi-line dump."""
    if isinstance(exc, ApiException):
        detail = ""
        try:
            detail = json.loads(exc.body or "{}").get("message", "")
        except (ValueError, AttributeError):
            detail = (exc.body or "")[:200]
        status = f"{exc.status} {exc.reason or ''}".strip()
        return ProviderError(f"Kubernetes API error: could not {action}: {status}: {detail}")
    return ProviderError(f"Kubernetes API unreachable: could not {action}: {exc}")


def _phase(pod) -> str | None:
    return pod.status.phase if pod.status else None


# What the client raises when the API server cannot be reached (refused, timed out, TLS).
_TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError)


def _load_api_client() -> client.ApiClient:
    """In-cluster configuration (the pod's ServiceAccount), else the kubeconfig (for a
    worker manager running outside the cluster). A Configuration of its own: the
    client's global default is left alone."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException as in_cluster:
        try:
            config.load_kube_config(client_configuration=configuration)
        except (config.ConfigException, OSError) as kubeconfig:
            raise ProviderError(
                "No Kubernetes configuration: not running in a pod with a ServiceAccount "
                f"({in_cluster}) and no usable kubeconfig ({kubeconfig})."
            ) from kubeconfig
    return client.ApiClient(configuration)


class KubernetesProvider:
    name = "kubernetes"
    # The worker manager polls is_alive() in a tight loop while an agent starts; Pods
    # take seconds to schedule and pull, so the API server is asked at most this often
    # per pod and the answer reused in between.
    min_poll_seconds: float = 1.0

    def __init__(self, *, api_client=None, namespace=None, image=None, server_url=None):
        # Settings (hodei/settings.py): the agents reach the worker manager at the URL
        # every managed worker uses, HODEI_WORKERMANAGER_URL.
        self.namespace = namespace or settings.HODEI_K8S_NAMESPACE
        self.image = image or settings.HODEI_K8S_IMAGE
        self.server_url = server_url or settings.HODEI_WORKERMANAGER_URL
        self._api_client = api_client
        self._core: client.CoreV1Api | None = None
        self._alive_cache: dict[str, tuple[float, bool | None]] = {}

    @property
    def core(self) -> client.CoreV1Api:
        # Loaded on first use, so that a missing configuration surfaces as a
        # ProviderError from start()/stop() rather than from the constructor.
        if self._core is None:
            self._core = client.CoreV1Api(self._api_client or _load_api_client())
        return self._core

    # -- the provider interface --------------------------------------------------------

    def start(self, managed, *, credential: str) -> Launch:
        pod, secret = pod_name(managed), secret_name(managed)
        secret_body = self.secret_manifest(managed, credential)
        pod_body = self.pod_manifest(managed)
        try:
            self.core.create_namespaced_secret(
                self.namespace, secret_body, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
        except (ApiException, *_TRANSPORT_ERRORS) as exc:
            raise _api_error(f"create secret {self.namespace}/{secret}", exc) from exc
        try:
            self.core.create_namespaced_pod(
                self.namespace, pod_body, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
        except (ApiException, *_TRANSPORT_ERRORS) as exc:
            # No pod will ever read the credential: do not leave it behind.
            self._delete("secret", secret)
            raise _api_error(f"create pod {self.namespace}/{pod}", exc) from exc
        return Launch(pid=None, host=pod)

    def is_alive(self, managed) -> bool | None:
        """True while the pod is Pending or Running; False once it has finished or is
        gone (restartPolicy Never: a finished pod never runs again); None when that
        cannot be known (the API cannot be asked, or the pod's node stopped reporting:
        phase Unknown), which lets heartbeats decide, as for another host's process."""
        key = str(managed.id)
        now = time.monotonic()
        cached = self._alive_cache.get(key)
        if cached and now - cached[0] < self.min_poll_seconds:
            return cached[1]
        try:
            pod = self._read_pod(pod_name(managed))
            alive = False if pod is None else ALIVE_BY_PHASE.get(_phase(pod))
        except ProviderError as exc:
            log.warning("%s", exc)
            alive = None
        self._alive_cache[key] = (now, alive)
        return alive

    def exit_reason(self, managed) -> str:
        """One line on why the pod is not running, for the managed worker's failure
        reason: its phase, the pod-level reason (an eviction, say) and each container's
        terminated or waiting state. Never raises: it is called while recording a
        failure."""
        name = pod_name(managed)
        try:
            pod = self._read_pod(name)
        except ProviderError as exc:
            return str(exc)
        if pod is None:
            return f"pod {self.namespace}/{name} not found (deleted, or never created)"
        parts = [f"pod {self.namespace}/{name} {_phase(pod) or 'Unknown'}"]
        status = pod.status
        if status and (status.reason or status.message):
            parts.append(": ".join(filter(None, (status.reason, status.message))))
        for container in (status and status.container_statuses) or []:
            state = container.state
            if state and state.terminated:
                t = state.terminated
                line = f"container {container.name} terminated: {t.reason or 'unknown'}"
                line += f" (exit code {t.exit_code})"
                parts.append(f"{line}: {t.message}" if t.message else line)
            elif state and state.waiting:
                w = state.waiting
                line = f"container {container.name} waiting: {w.reason or 'unknown'}"
                parts.append(f"{line}: {w.message}" if w.message else line)
        return "; ".join(parts)

    def stop(self, managed, *, grace_seconds: float) -> None:
        """Delete the pod (the kubelet sends SIGTERM, then SIGKILL after the grace
        period) and its Secret. Returns without waiting for the pod to be gone: the
        kubelet enforces the grace period. Already deleted is fine."""
        # At least 1 s: a grace period of 0 asks the API server to remove the pod object
        # at once, before the kubelet has stopped its containers.
        grace = max(1, math.ceil(grace_seconds))
        self._delete("pod", pod_name(managed), grace_seconds=grace, strict=True)
        self._delete("secret", secret_name(managed), strict=True)
        self._alive_cache.pop(str(managed.id), None)

    # -- manifests ---------------------------------------------------------------------

    def labels(self, managed) -> dict[str, str]:
        """The managed worker's labels that are valid Kubernetes labels (others are
        only passed to the agent), then Hodei's own, which they cannot override."""
        labels = {k: v for k, v in (managed.labels or {}).items() if valid_label(k, v)}
        skipped = sorted(set(managed.labels or {}) - set(labels))
        if skipped:
            log.info("Labels not set on pod %s (not valid there): %s", pod_name(managed), skipped)
        return {
            **labels,
            LABEL_NAME: "hodei-agent",
            "app.kubernetes.io/component": "managed-worker",
            "app.kubernetes.io/part-of": "hodei",
            "app.kubernetes.io/managed-by": "hodei-workermanager",
            LABEL_WORKER: str(managed.id),
        }

    def secret_manifest(self, managed, credential: str) -> client.V1Secret:
        return client.V1Secret(
            api_version="v1",
            kind="Secret",
            metadata=client.V1ObjectMeta(
                name=secret_name(managed),
                # The pod's own labels: one selector finds both (docs/kubernetes.md).
                labels={
                    LABEL_NAME: "hodei-agent",
                    "app.kubernetes.io/component": "managed-worker",
                    "app.kubernetes.io/part-of": "hodei",
                    LABEL_WORKER: str(managed.id),
                },
            ),
            type="Opaque",
            immutable=True,
            string_data={TOKEN_KEY: credential},
        )

    def agent_args(self, managed) -> list[str]:
        args = [
            "--server", self.server_url,
            "--type", managed.type,
            "--name", managed.name,
            "--concurrency", str(managed.concurrency),
        ]  # fmt: skip
        for key, value in (managed.labels or {}).items():
            args += ["--label", f"{key}={value}"]
        return args

    def pod_manifest(self, managed) -> client.V1Pod:
        return client.V1Pod(
            api_version="v1",
            kind="Pod",
            metadata=client.V1ObjectMeta(name=pod_name(managed), labels=self.labels(managed)),
            spec=client.V1PodSpec(
                # One agent, one pod: when it exits, the managed worker has ended; the
                # worker manager decides whether to start another.
                restart_policy="Never",
                # Jobs run in this pod: no Kubernetes API credentials for them to find.
                automount_service_account_token=False,
                # The pause container becomes PID 1 and reaps the orphans of the commands
                # the agent runs (what `init: true` does in compose.yaml).
                share_process_namespace=True,
                termination_grace_period_seconds=POD_GRACE_SECONDS,
                security_context=client.V1PodSecurityContext(
                    run_as_non_root=True,
                    run_as_user=AGENT_UID,
                    run_as_group=AGENT_UID,
                    seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
                ),
                containers=[
                    client.V1Container(
                        name="agent",
                        image=self.image,
                        command=["hodei-agent"],
                        args=self.agent_args(managed),
                        env=[
                            client.V1EnvVar(
                                name="HODEI_AGENT_TOKEN",
                                value_from=client.V1EnvVarSource(
                                    secret_key_ref=client.V1SecretKeySelector(
                                        name=secret_name(managed), key=TOKEN_KEY
                                    )
                                ),
                            ),
                            # The pod is the isolation boundary (see docs/kubernetes.md);
                            # the bubblewrap sandbox needs privileges this pod lacks.
                            client.V1EnvVar(name="HODEI_ISOLATION", value="none"),
                        ],
                        resources=AGENT_RESOURCES,
                        security_context=client.V1SecurityContext(
                            allow_privilege_escalation=False,
                            capabilities=client.V1Capabilities(drop=["ALL"]),
                        ),
                    )
                ],
            ),
        )

    # -- helpers -----------------------------------------------------------------------

    def _read_pod(self, name: str) -> client.V1Pod | None:
        """The pod, or None when there is none; a ProviderError when the API cannot say."""
        try:
            return self.core.read_namespaced_pod(
                name, self.namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
        except (ApiException, *_TRANSPORT_ERRORS) as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise _api_error(f"read pod {self.namespace}/{name}", exc) from exc

    def _delete(
        self, kind: str, name: str, *, grace_seconds: int | None = None, strict: bool = False
    ) -> None:
        """Delete a pod or secret; a 404 is success. Other failures raise a
        ProviderError when ``strict``, else are logged (best-effort cleanup)."""
        delete = {
            "pod": self.core.delete_namespaced_pod,
            "secret": self.core.delete_namespaced_secret,
        }[kind]
        options = {} if grace_seconds is None else {"grace_period_seconds": grace_seconds}
        try:
            delete(name, self.namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS, **options)
        except (ApiException, *_TRANSPORT_ERRORS) as exc:
            if getattr(exc, "status", None) == 404:
                return
            error = _api_error(f"delete {kind} {self.namespace}/{name}", exc)
            if strict:
                raise error from exc
            log.warning("%s", error)
