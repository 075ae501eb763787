"""deploy/k8s: every listed resource exists; each overlay builds with the real
kustomize (kubectl kustomize) and validates against the Kubernetes schemas; the
built objects keep the promises (native gRPC probes, non-root read-only pods, named
ports, selectors that match, GPUs, KEDA on the TILES consumer, PDBs, NetworkPolicies)."""

from __future__ import annotations

import importlib.util
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common import jetstream
from services.common.settings import METRICS_OFFSET
from tests.deploy.conftest import K8S, KUSTOMIZE_HINT, OVERLAYS, kustomize_command

GRPC_SERVICES = ("gateway", "scheduler", "tenancy", "storage", "inference")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
KUBERNETES_VERSION = "1.32.0"


def _kustomizations() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


@cache
def build(overlay: str) -> tuple[dict[str, Any], ...]:
    command = kustomize_command()
    if command is None:
        pytest.skip(KUSTOMIZE_HINT)
    result = subprocess.run([*command, str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in build(overlay) if o["kind"] == kind}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("kustomization", _kustomizations(), ids=lambda p: str(p.parent.relative_to(K8S)))
def test_every_listed_resource_exists(kustomization: Path) -> None:
    spec = yaml.safe_load(kustomization.read_text())
    for entry in spec.get("resources", []):
        assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry} does not exist"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_validates_against_kubernetes_schemas(overlay: str) -> None:
    docs = build(overlay)
    assert {o["kind"] for o in docs} >= {
        "Namespace",
        "Deployment",
        "StatefulSet",
        "Job",
        "Service",
        "ScaledObject",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
    }
    if importlib.util.find_spec("kubernetes_validate") is None:
        pytest.skip("kubernetes-validate not installed: pip install kubernetes-validate==1.37.0")
    import kubernetes_validate

    for obj in docs:
        if obj["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: its shape is checked in test_inference_scales_on_the_tiles_backlog
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lands_in_the_overlay_namespace(overlay: str) -> None:
    (namespace,) = objects(overlay, "Namespace")
    assert objects(overlay, "Namespace")[namespace]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in build(overlay):
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_services_have_native_grpc_probes_and_named_ports(overlay: str) -> None:
    deployments = objects(overlay, "Deployment")
    for name in GRPC_SERVICES:
        (container,) = pod_spec(deployments[name])["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == ports["grpc"] + METRICS_OFFSET, name
        env = env_of(container)
        assert env["SLIDELANE_GRPC_PORT"] == str(ports["grpc"]) and env["SLIDELANE_METRICS_PORT"] == str(ports["metrics"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == ports["grpc"], f"{name} {probe}"
        annotations = deployments[name]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(ports["metrics"])
        assert container["command"] == ["python", "-m", f"services.{name}"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_non_root_with_read_only_root_and_limits(overlay: str) -> None:
    for kind in WORKLOAD_KINDS:
        for name, workload in objects(overlay, kind).items():
            spec = pod_spec(workload)
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
            assert spec.get("automountServiceAccountToken") is False, name
            for container in spec["containers"]:
                security = container["securityContext"]
                assert security["readOnlyRootFilesystem"] is True, name
                assert security["allowPrivilegeEscalation"] is False, name
                assert security["capabilities"]["drop"] == ["ALL"], name
                assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_match_pods_and_services_reach_named_ports(overlay: str) -> None:
    pods = {}
    for kind in ("Deployment", "StatefulSet"):
        for name, workload in objects(overlay, kind).items():
            labels = workload["spec"]["template"]["metadata"]["labels"]
            assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
            pods[name] = workload
    for name, service in objects(overlay, "Service").items():
        selected = [
            w for w in pods.values() if service["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected, f"Service {name} selects no pod"
        port_names = {p["name"] for w in selected for c in pod_spec(w)["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"Service {name} targets unknown port {port['targetPort']}"
    for name, pdb in objects(overlay, "PodDisruptionBudget").items():
        assert (
            name in pods
            and pdb["spec"]["selector"]["matchLabels"].items() <= pods[name]["spec"]["template"]["metadata"]["labels"].items()
        )
    assert set(objects(overlay, "PodDisruptionBudget")) >= {*GRPC_SERVICES, "envoy", "nats"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_and_secrets_referenced_exist(overlay: str) -> None:
    config_maps = set(objects(overlay, "ConfigMap"))
    secrets = set(objects(overlay, "Secret"))
    for kind in WORKLOAD_KINDS:
        for name, workload in objects(overlay, kind).items():
            for container in pod_spec(workload)["containers"]:
                for source in container.get("envFrom", []):
                    assert source["configMapRef"]["name"] in config_maps, name
                for value in env_of(container).values():
                    ref = value.get("secretKeyRef") if isinstance(value, dict) else None
                    if ref and overlay == "dev":
                        assert ref["name"] in secrets, f"{name} needs Secret {ref['name']}"
                    elif ref:
                        assert ref["name"] == "slidelane-db", "prod documents only slidelane-db as made by hand"


def test_nats_is_a_three_node_statefulset_with_routes() -> None:
    nats = objects("prod", "StatefulSet")["nats"]
    assert nats["spec"]["replicas"] == 3 and nats["spec"]["volumeClaimTemplates"]
    config = next(c for c in build("prod") if c["kind"] == "ConfigMap" and c["metadata"]["name"].startswith("nats-config"))
    text = config["data"]["nats.conf"]
    for i in range(3):
        assert f"nats://nats-{i}.{nats['spec']['serviceName']}:6222" in text
    assert "jetstream" in text and "server_name: $POD_NAME" in text


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_inference_scales_on_the_tiles_backlog(overlay: str) -> None:
    (scaled,) = objects(overlay, "ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] == "inference"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    meta = trigger["metadata"]
    assert meta["stream"] == jetstream.TILES.stream and meta["consumer"] == jetstream.TILES.durable
    namespace = scaled["metadata"]["namespace"]
    assert meta["natsServerMonitoringEndpoint"] == f"nats-headless.{namespace}.svc.cluster.local:8222"
    assert "replicas" not in objects(overlay, "Deployment")["inference"]["spec"], "KEDA owns the replica count"


def test_prod_inference_requests_a_gpu_and_dev_runs_on_cpu() -> None:
    (prod,) = pod_spec(objects("prod", "Deployment")["inference"])["containers"]
    assert prod["resources"]["limits"]["nvidia.com/gpu"] == 1 and env_of(prod)["SLIDELANE_DEVICE"] == "cuda"
    assert prod["image"].endswith("-cuda")
    (dev,) = pod_spec(objects("dev", "Deployment")["inference"])["containers"]
    assert "nvidia.com/gpu" not in str(dev["resources"]) and env_of(dev)["SLIDELANE_DEVICE"] == "cpu"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_envoy_is_reachable_from_outside(overlay: str) -> None:
    policies = objects(overlay, "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")
    for name, policy in policies.items():
        for rule in policy["spec"].get("ingress", []):
            sources = rule.get("from")
            if sources is None:  # from anywhere: only Envoy's public port
                assert policy["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "envoy"}}, name
                assert [p["port"] for p in rule["ports"]] == ["http"], name
            else:
                for source in sources:
                    assert "ipBlock" not in source, name
                    if "namespaceSelector" in source:
                        assert rule.get("ports"), f"{name}: another namespace gets named ports only"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_init_jobs_run_migrations_and_streams_once(overlay: str) -> None:
    jobs = objects(overlay, "Job")
    (migrate,) = pod_spec(jobs["slidelane-migrate"])["containers"]
    assert migrate["command"] == ["python", "-m", "services.common.migrate"]
    (streams,) = pod_spec(jobs["slidelane-init-jetstream"])["containers"]
    assert streams["command"][:2] == ["python", "/app/deploy/docker/init_jetstream.py"]
    for name, deployment in objects(overlay, "Deployment").items():
        for container in pod_spec(deployment)["containers"]:
            assert "services.common.migrate" not in container["command"], f"{name} must not migrate per replica"
