"""The Kubernetes manifests under k8s/: every overlay builds with kustomize, every object validates
against the pinned Kubernetes API schema, and the invariants the design asks for hold (Online
Boutique habits: non-root locked-down containers, gRPC probes, requests and limits, deny-all
network policy with one opening per caller, configured addresses that resolve to real Services).

Offline: `kubectl kustomize` builds the overlays, `kubernetes_validate` ships the schemas.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

try:
    import kubernetes_validate
except ImportError:  # pragma: no cover - it is a dev dependency
    kubernetes_validate = None

ROOT = Path(__file__).resolve().parents[1]
OVERLAYS_DIR = ROOT / "k8s" / "overlays"
OVERLAYS = ("dev", "gpu", "prod")
GPU_OVERLAYS = {"gpu", "prod"}
# kubectl on these machines is v1.32; kubernetes_validate ships schemas up to a newer release.
K8S_VERSION = "1.32.0"
NAMESPACE = "modsnet"
# By tag and digest (docs/deploy.md): the digest of the image `make image` built; the recommender of the GPU
# overlays runs the CUDA variant, by tag until one is built and pushed.
IMAGE = "ghcr.io/modsnet/modsnet:0.1.0@sha256:bb6d9b872b473ab5ec00f0fb6d8059cf6477083be838569def0f49dda03388b3"
CUDA_IMAGE = "ghcr.io/modsnet/modsnet-cuda:0.1.0"
GPU = "nvidia.com/gpu"
# Custom resources of the monitoring component (k8s/observability), kind -> apiVersion.
CUSTOM_RESOURCES = {"ServiceMonitor": "monitoring.coreos.com/v1", "PrometheusRule": "monitoring.coreos.com/v1"}

SERVICES = {"query": 50051, "recommender": 50052, "knowledge": 50053, "storage": 50054}
METRICS_PORT = 9090
QUERY_HTTP_PORT = 8080  # the query service's HTTP API and web app
# Who calls whom (design: query -> recommender, knowledge, storage; recommender -> knowledge,
# storage; knowledge -> storage, redis; storage -> minio).
CALLS = {
    ("query", "recommender"),
    ("query", "knowledge"),
    ("query", "storage"),
    ("recommender", "knowledge"),
    ("recommender", "storage"),
    ("knowledge", "storage"),
    ("knowledge", "redis"),
    ("storage", "minio"),
}

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl (with its built-in kustomize) is not installed: cannot build k8s/"
)


# ---------------------------------------------------------------------------------------------
# Building and indexing an overlay


@functools.cache
def _build(overlay: str) -> tuple[dict[str, Any], ...]:
    assert KUBECTL is not None
    proc = subprocess.run(
        [KUBECTL, "kustomize", str(OVERLAYS_DIR / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"kubectl kustomize {overlay} failed:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


@dataclass
class Workload:
    """A Deployment or StatefulSet, seen through its pod template."""

    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.obj["kind"]

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]

    @property
    def pod(self) -> dict[str, Any]:
        return self.obj["spec"]["template"]["spec"]

    @property
    def labels(self) -> dict[str, str]:
        return self.obj["spec"]["template"]["metadata"].get("labels", {})

    @property
    def annotations(self) -> dict[str, str]:
        return self.obj["spec"]["template"]["metadata"].get("annotations", {})

    @property
    def containers(self) -> list[dict[str, Any]]:
        return self.pod["containers"] + self.pod.get("initContainers", [])

    def ports(self) -> dict[str, int]:
        """Container port name -> number (unnamed ports under their number)."""
        out: dict[str, int] = {}
        for container in self.pod["containers"]:
            for port in container.get("ports", []):
                out[port.get("name", str(port["containerPort"]))] = port["containerPort"]
        return out

    def resolve_port(self, port: int | str) -> int | None:
        numbers = self.ports()
        if isinstance(port, int):
            return port if port in numbers.values() else None
        return numbers.get(port)


@dataclass
class Manifests:
    overlay: str
    objects: tuple[dict[str, Any], ...]
    by_kind: dict[str, dict[str, dict[str, Any]]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_kind = {}
        for obj in self.objects:
            named = self.by_kind.setdefault(obj["kind"], {})
            assert obj["metadata"]["name"] not in named, f"duplicate {obj['kind']}/{obj['metadata']['name']}"
            named[obj["metadata"]["name"]] = obj

    def of(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.by_kind.get(kind, {})

    @property
    def workloads(self) -> dict[str, Workload]:
        return {name: Workload(obj) for kind in ("Deployment", "StatefulSet") for name, obj in self.of(kind).items()}

    @property
    def deployments(self) -> dict[str, Workload]:
        return {name: Workload(obj) for name, obj in self.of("Deployment").items()}

    def workload_for(self, selector: dict[str, str]) -> list[Workload]:
        return [w for w in self.workloads.values() if selector.items() <= w.labels.items()]

    def hpa_for(self, deployment: str) -> dict[str, Any] | None:
        for hpa in self.of("HorizontalPodAutoscaler").values():
            ref = hpa["spec"]["scaleTargetRef"]
            if ref["kind"] == "Deployment" and ref["name"] == deployment:
                return hpa
        return None

    def min_replicas(self, deployment: str) -> int:
        """The fewest pods the Deployment runs: the HPA's floor when one scales it."""
        hpa = self.hpa_for(deployment)
        if hpa is not None:
            return hpa["spec"].get("minReplicas", 1)
        return self.of("Deployment")[deployment]["spec"].get("replicas", 1)


@pytest.fixture(scope="module", params=OVERLAYS)
def manifests(request: pytest.FixtureRequest) -> Manifests:
    return Manifests(request.param, _build(request.param))


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def _env_value(container: dict[str, Any], name: str) -> str | None:
    item = _env(container).get(name)
    return None if item is None else item.get("value")


def _server(workload: Workload) -> dict[str, Any]:
    containers = workload.pod["containers"]
    assert len(containers) == 1, f"{workload.name}: expected one container"
    return containers[0]


# ---------------------------------------------------------------------------------------------
# Schema


def test_every_object_validates_against_the_pinned_api(manifests: Manifests) -> None:
    if kubernetes_validate is None:
        pytest.skip("kubernetes-validate is not installed (pip install -e '.[dev]')")
    errors = []
    for obj in manifests.objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in CUSTOM_RESOURCES:
            # The Prometheus operator's kinds: no schema ships for them (tests/test_observability.py checks them).
            assert obj["apiVersion"] == CUSTOM_RESOURCES[obj["kind"]], where
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{where}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{where}: {exc.message}")
    assert not errors, f"{manifests.overlay}:\n" + "\n".join(errors)


def test_everything_lives_in_the_namespace(manifests: Manifests) -> None:
    assert NAMESPACE in manifests.of("Namespace")
    for obj in manifests.objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']}"


# ---------------------------------------------------------------------------------------------
# Pods


def test_every_container_is_locked_down(manifests: Manifests) -> None:
    """Online Boutique's securityContext, for ours and for Redis and MinIO alike."""
    for workload in manifests.workloads.values():
        pod_ctx = workload.pod.get("securityContext", {})
        pod_seccomp = pod_ctx.get("seccompProfile", {}).get("type")
        for container in workload.containers:
            where = f"{manifests.overlay}: {workload.name}/{container['name']}"
            ctx = container.get("securityContext", {})
            assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, where
            assert ctx.get("runAsUser", pod_ctx.get("runAsUser", 1)) != 0, where
            assert ctx.get("readOnlyRootFilesystem") is True, where
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert ctx.get("privileged", False) is False, where
            assert "ALL" in ctx.get("capabilities", {}).get("drop", []), where
            assert not ctx.get("capabilities", {}).get("add"), where
            assert ctx.get("seccompProfile", {}).get("type", pod_seccomp) == "RuntimeDefault", where
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= resources.get(kind, {}).keys(), f"{where}: {kind}"


def test_every_pod_has_its_own_service_account_without_a_token(manifests: Manifests) -> None:
    accounts = manifests.of("ServiceAccount")
    for workload in manifests.workloads.values():
        account = workload.pod.get("serviceAccountName")
        assert account == workload.name, f"{workload.name}: serviceAccountName {account!r}"
        assert accounts[account].get("automountServiceAccountToken") is False, account
        assert workload.pod.get("automountServiceAccountToken") is False, workload.name


def test_modsnet_deployments(manifests: Manifests) -> None:
    """One Deployment per service: image, args, ports, env, gRPC probes, grace, /tmp, scraping."""
    deployments = manifests.deployments
    assert set(deployments) == set(SERVICES)
    for name, port in SERVICES.items():
        workload = deployments[name]
        container = _server(workload)
        where = f"{manifests.overlay}: {name}"
        gpu = name == "recommender" and manifests.overlay in GPU_OVERLAYS
        assert container["image"] == (CUDA_IMAGE if gpu else IMAGE), where
        assert container["args"] == ["serve", name], where
        # The query service also serves its HTTP API and web app on a port of its own.
        extra = {"http": QUERY_HTTP_PORT} if name == "query" else {}
        assert workload.ports() == {"grpc": port, "metrics": METRICS_PORT, **extra}, where
        assert _env_value(container, "MODSNET_PORT") == str(port), where
        assert _env_value(container, "MODSNET_METRICS_PORT") == str(METRICS_PORT), where
        assert _env_value(container, "MODSNET_LOG_LEVEL"), where

        probes = ["readinessProbe", "livenessProbe"] + (["startupProbe"] if name == "recommender" else [])
        # With TLS on, probes (which speak no TLS) go to the plaintext health-only port.
        probe_port = int(_env_value(container, "MODSNET_HEALTH_PORT") or port)
        for probe in probes:
            assert container.get(probe, {}).get("grpc", {}).get("port") == probe_port, f"{where}: {probe}"
        # Readiness follows the service's dependencies; liveness (and startup) only that the process serves,
        # so a pod is not restarted because a neighbour is down.
        assert container["readinessProbe"]["grpc"].get("service") == "readiness", where
        for probe in probes[1:]:
            assert container[probe]["grpc"].get("service") == "liveness", f"{where}: {probe}"

        # The server stops with a 30 s grace after SIGTERM; the pod must outlast it.
        assert workload.pod["terminationGracePeriodSeconds"] > 30, where

        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in workload.pod.get("volumes", [])}
        assert "emptyDir" in volumes[mounts["/tmp"]], f"{where}: /tmp"
        if name in ("query", "recommender"):
            assert _env_value(container, "MODSNET_HOME") == "/data", where
            assert "emptyDir" in volumes[mounts["/data"]], f"{where}: /data"

        assert workload.annotations.get("prometheus.io/scrape") == "true", where
        assert workload.annotations.get("prometheus.io/port") == str(METRICS_PORT), where
        assert workload.annotations.get("prometheus.io/path") == "/metrics", where


def test_backends_are_configured(manifests: Manifests) -> None:
    knowledge = _server(manifests.deployments["knowledge"])
    assert _env_value(knowledge, "MODSNET_KNOWLEDGE_BACKEND") == "redis"
    storage = _server(manifests.deployments["storage"])
    assert _env_value(storage, "MODSNET_STORAGE_BACKEND") == "s3"
    assert _env_value(storage, "MODSNET_S3_BUCKET") == "modsnet"
    assert _env_value(storage, "MODSNET_S3_SECURE") == "false"
    for secret_env in ("MODSNET_S3_ACCESS_KEY", "MODSNET_S3_SECRET_KEY"):
        assert "secretKeyRef" in _env(storage)[secret_env].get("valueFrom", {}), secret_env
    assert "secretKeyRef" in _env(knowledge)["MODSNET_REDIS_PASSWORD"].get("valueFrom", {})


def test_every_secret_reference_resolves(manifests: Manifests) -> None:
    secrets = manifests.of("Secret")
    for workload in manifests.workloads.values():
        for container in workload.containers:
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref is None:
                    continue
                where = f"{manifests.overlay}: {workload.name}: {item['name']}"
                assert ref["name"] in secrets, f"{where}: no Secret {ref['name']}"
                secret = secrets[ref["name"]]
                keys = set(secret.get("data", {})) | set(secret.get("stringData", {}))
                assert ref["key"] in keys, f"{where}: Secret {ref['name']} has no key {ref['key']}"


def test_stateful_backends_persist(manifests: Manifests) -> None:
    statefulsets = manifests.of("StatefulSet")
    assert set(statefulsets) == {"redis", "minio"}
    for name, obj in statefulsets.items():
        templates = obj["spec"].get("volumeClaimTemplates", [])
        assert templates, f"{name}: no volumeClaimTemplates"
        mounts = {m["name"] for m in _server(Workload(obj)).get("volumeMounts", [])}
        assert templates[0]["metadata"]["name"] in mounts, name
        assert obj["spec"]["serviceName"] in manifests.of("Service"), name
    args = _server(Workload(statefulsets["redis"]))["args"]
    pairs = dict(zip(args[1::2], args[2::2], strict=False))
    assert pairs.get("--appendonly") == "yes"
    assert pairs.get("--appendfsync") == "always"
    assert "--requirepass" in pairs


# ---------------------------------------------------------------------------------------------
# Services and addresses


def test_every_service_selects_a_workload_and_its_ports(manifests: Manifests) -> None:
    for name, service in manifests.of("Service").items():
        selector = service["spec"].get("selector")
        assert selector, f"{name}: a Service without a selector"
        matches = manifests.workload_for(selector)
        assert matches, f"{manifests.overlay}: Service {name} selects no Deployment/StatefulSet"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for workload in matches:
                assert workload.resolve_port(target) is not None, f"{name}:{port['port']} -> {target}"
            if port.get("name") == "grpc":
                assert port.get("appProtocol") == "grpc", name
    for name in SERVICES:
        service = manifests.of("Service")[name]
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", name
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert ports["grpc"]["port"] == SERVICES[name], name
        assert ports["metrics"]["port"] == METRICS_PORT, name


def _target(manifests: Manifests, host: str, port: int) -> Workload:
    """The workload behind `host:port`, which must be a Service of this namespace."""
    services = manifests.of("Service")
    assert host in services, f"{manifests.overlay}: no Service named {host!r}"
    by_port = {p["port"]: p for p in services[host]["spec"]["ports"]}
    assert port in by_port, f"{manifests.overlay}: Service {host} has no port {port}"
    (workload,) = manifests.workload_for(services[host]["spec"]["selector"])
    target = by_port[port].get("targetPort", port)
    assert workload.resolve_port(target) is not None, f"{host}:{port}"
    return workload


def _configured_calls(manifests: Manifests) -> dict[tuple[str, str], int]:
    """(caller, callee) -> callee container port, from every address in the containers' env."""
    calls: dict[tuple[str, str], int] = {}
    for workload in manifests.deployments.values():
        for name, item in _env(_server(workload)).items():
            value = item.get("value")
            if name.endswith("_ADDR"):
                host, _, port = value.rpartition(":")
            elif name in ("MODSNET_REDIS_URL", "MODSNET_S3_ENDPOINT"):
                parts = urlsplit(value if "//" in value else f"//{value}")
                host, port = parts.hostname, parts.port
            else:
                continue
            callee = _target(manifests, host, int(port))
            container_port = callee.resolve_port(
                next(
                    p.get("targetPort", p["port"])
                    for p in manifests.of("Service")[host]["spec"]["ports"]
                    if p["port"] == int(port)
                )
            )
            if callee.kind == "Deployment":
                # A modsnet service: the address must reach the port that service listens on.
                assert _env_value(_server(callee), "MODSNET_PORT") == str(container_port), name
            calls[(workload.name, callee.name)] = container_port
    return calls


def test_addresses_point_at_services_and_match_the_call_graph(manifests: Manifests) -> None:
    assert set(_configured_calls(manifests)) == CALLS


# ---------------------------------------------------------------------------------------------
# Network policy: evaluated the way the API defines it (matchLabels/matchExpressions, ports by
# number or name; ipBlock is taken to admit traffic from outside the cluster only).


@dataclass(frozen=True)
class Endpoint:
    name: str
    namespace: str | None  # None: outside the cluster
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


CLIENT = Endpoint("client", None)
PROMETHEUS = Endpoint("prometheus", "monitoring", (("app.kubernetes.io/name", "prometheus"),))
KUBE_DNS = Endpoint("kube-dns", "kube-system", (("k8s-app", "kube-dns"),))


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def _peer_matches(peer: dict[str, Any], other: Endpoint) -> bool:
    if "ipBlock" in peer:
        return other.namespace is None
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        ns_ok = _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": other.namespace})
    else:
        ns_ok = other.namespace == NAMESPACE
    return ns_ok and _selects(peer.get("podSelector", {}), other.label_map)


def _port_matches(rule: dict[str, Any], port: int, names: set[str], protocol: str) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None or wanted == port or wanted in names:
            return True
        if isinstance(wanted, int) and wanted <= port <= entry.get("endPort", wanted):
            return True
    return False


def _policy_types(policy: dict[str, Any]) -> list[str]:
    spec = policy["spec"]
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))


def _allowed(
    manifests: Manifests, src: Endpoint, dst: Endpoint, port: int, names: set[str], protocol: str = "TCP"
) -> bool:
    policies = list(manifests.of("NetworkPolicy").values())

    def direction_allows(kind: str, subject: Endpoint, other: Endpoint) -> bool:
        if subject.namespace != NAMESPACE:
            return True  # only this namespace's pods are governed by these policies
        selecting = [
            p for p in policies if kind in _policy_types(p) and _selects(p["spec"]["podSelector"], subject.label_map)
        ]
        if not selecting:
            return True
        key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
        return any(
            (not rule.get(peers_key) or any(_peer_matches(peer, other) for peer in rule[peers_key]))
            and _port_matches(rule, port, names, protocol)
            for p in selecting
            for rule in p["spec"].get(key) or []
        )

    return direction_allows("Egress", src, dst) and direction_allows("Ingress", dst, src)


def _endpoint(workload: Workload) -> Endpoint:
    return Endpoint(workload.name, NAMESPACE, tuple(sorted(workload.labels.items())))


def test_a_deny_all_network_policy_exists(manifests: Manifests) -> None:
    deny_all = [
        p
        for p in manifests.of("NetworkPolicy").values()
        if p["spec"]["podSelector"] in ({}, None)
        and {"Ingress", "Egress"} <= set(_policy_types(p))
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny_all, f"{manifests.overlay}: no deny-all NetworkPolicy"


def test_network_policy_opens_exactly_the_call_graph(manifests: Manifests) -> None:
    """Every (source, pod, port) triple: allowed iff it is a configured call (on the port it
    uses), a client on query's gRPC or HTTP port, or Prometheus on a metrics port. The configured calls
    are the design's call graph (checked above)."""
    workloads = manifests.workloads
    calls = _configured_calls(manifests)
    sources = [_endpoint(w) for w in workloads.values()] + [CLIENT, PROMETHEUS]
    wrong = []
    for dst_workload in workloads.values():
        dst = _endpoint(dst_workload)
        for port_name, port in dst_workload.ports().items():
            for src in sources:
                expected = (
                    calls.get((src.name, dst.name)) == port
                    or (dst.name == "query" and port_name in ("grpc", "http"))
                    or (src is PROMETHEUS and port_name == "metrics")
                )
                if _allowed(manifests, src, dst, port, {port_name}) != expected:
                    wrong.append(f"{src.name} -> {dst.name}:{port} ({port_name}) expected {expected}")
    assert not wrong, f"{manifests.overlay}:\n" + "\n".join(wrong)


def test_every_pod_can_resolve_names(manifests: Manifests) -> None:
    for workload in manifests.workloads.values():
        for protocol in ("UDP", "TCP"):
            assert _allowed(manifests, _endpoint(workload), KUBE_DNS, 53, set(), protocol), (
                f"{manifests.overlay}: {workload.name} cannot reach DNS over {protocol}"
            )


# ---------------------------------------------------------------------------------------------
# Scaling, disruption, GPUs


def test_autoscalers_and_disruption_budgets(manifests: Manifests) -> None:
    for name in ("query", "recommender"):
        hpa = manifests.hpa_for(name)
        assert hpa is not None, f"{manifests.overlay}: no HPA for {name}"
        assert hpa["apiVersion"] == "autoscaling/v2"
        metrics = [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
        assert "cpu" in metrics, name
        assert hpa["spec"]["maxReplicas"] >= hpa["spec"].get("minReplicas", 1), name
    budgets = list(manifests.of("PodDisruptionBudget").values())
    for name, workload in manifests.deployments.items():
        (pdb,) = [b for b in budgets if _selects(b["spec"]["selector"], workload.labels)]
        # A budget that can never be met blocks every node drain.
        if "minAvailable" in pdb["spec"]:
            assert pdb["spec"]["minAvailable"] < manifests.min_replicas(name), name
        else:
            assert pdb["spec"]["maxUnavailable"] >= 1, name


def test_replicas_per_overlay(manifests: Manifests) -> None:
    if manifests.overlay == "dev":
        for name, deployment in manifests.of("Deployment").items():
            assert deployment["spec"].get("replicas") == 1, name
        for name, hpa in manifests.of("HorizontalPodAutoscaler").items():
            assert hpa["spec"].get("minReplicas", 1) <= 1, name
    if manifests.overlay == "prod":
        for name in ("query", "recommender"):
            assert manifests.min_replicas(name) >= 2, name


def test_only_the_recommender_gets_a_gpu(manifests: Manifests) -> None:
    gpu = manifests.overlay in GPU_OVERLAYS
    for workload in manifests.workloads.values():
        for container in workload.containers:
            resources = container.get("resources", {})
            wants = {str(resources.get(kind, {}).get(GPU, "0")) for kind in ("requests", "limits")}
            if gpu and workload.name == "recommender":
                assert wants == {"1"}, f"{manifests.overlay}: recommender GPU {wants}"
            else:
                assert wants == {"0"}, f"{manifests.overlay}: {workload.name} asks for a GPU"
    recommender = manifests.deployments["recommender"]
    assert _env_value(_server(recommender), "MODSNET_DEVICE") == ("cuda" if gpu else "cpu")
    tolerations = {t.get("key") for t in recommender.pod.get("tolerations", [])}
    assert (GPU in tolerations) == gpu
    assert bool(recommender.pod.get("nodeSelector")) == gpu
    for name, workload in manifests.workloads.items():
        if name != "recommender":
            assert GPU not in {t.get("key") for t in workload.pod.get("tolerations", [])}, name


def test_pods_serve_on_their_interfaces_and_prod_turns_authentication_on(manifests: Manifests) -> None:
    """`modsnet serve` binds loopback unless told, so each pod says 0.0.0.0; prod runs with TLS and tokens."""
    for name in SERVICES:
        container = _server(manifests.deployments[name])
        assert _env_value(container, "MODSNET_HOST") == "0.0.0.0", name
        assert _env_value(container, "MODSNET_METRICS_HOST") == "0.0.0.0", name
        if manifests.overlay == "prod":
            for setting in ("MODSNET_TLS_CERT", "MODSNET_TLS_KEY", "MODSNET_TLS_CA", "MODSNET_AUTH_FILE"):
                assert _env_value(container, setting), f"prod {name}: {setting}"
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            assert {"tls", "auth"} <= mounts, f"prod {name}: {mounts}"
