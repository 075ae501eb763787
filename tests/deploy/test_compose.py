"""deploy/compose/docker-compose.yml: the compose-spec schema, and the structure the
README promises (services, health, start order, GPU reservation, NATS cluster, ports)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from services.common.settings import METRICS_OFFSET
from tests.deploy.conftest import COMPOSE_FILE, PROMETHEUS

SLIDELANE_SERVICES = ("gateway", "scheduler", "tenancy", "storage")
NATS_NODES = ("nats-1", "nats-2", "nats-3")
ONE_SHOT = ("migrate", "init-jetstream")
INFERENCE = ("inference", "inference-cpu")


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return {k: str(v) for k, v in env.items()}


def test_matches_the_compose_spec_schema() -> None:
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema not installed: pip install check-jsonschema==0.39.0 (ships the compose-spec schema)")
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_part_is_there(compose: dict[str, Any]) -> None:
    expected = {"envoy", "postgres", "prometheus", "grafana", *SLIDELANE_SERVICES, *NATS_NODES, *ONE_SHOT, *INFERENCE}
    assert expected <= compose["services"].keys()


def test_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name in ONE_SHOT:
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in (*SLIDELANE_SERVICES, *INFERENCE):
        assert "healthcheck.py" in " ".join(compose["services"][name]["healthcheck"]["test"]), name


def test_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for node in NATS_NODES:
        assert services["init-jetstream"]["depends_on"][node]["condition"] == "service_healthy"
    for name in (*SLIDELANE_SERVICES, *INFERENCE):
        deps = services[name]["depends_on"]
        for step in ONE_SHOT:
            assert deps[step]["condition"] == "service_completed_successfully", f"{name} must wait for {step}"
    for peer in ("scheduler", "tenancy", "storage"):
        assert services["gateway"]["depends_on"][peer]["condition"] == "service_healthy"
    assert services["envoy"]["depends_on"]["gateway"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["python", "-m", "services.common.migrate"]


def test_gpu_inference_reserves_a_gpu_and_cpu_profile_does_not(compose: dict[str, Any]) -> None:
    gpu, cpu = compose["services"]["inference"], compose["services"]["inference-cpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert _env(gpu)["SLIDELANE_DEVICE"] == "cuda" and _env(cpu)["SLIDELANE_DEVICE"] == "cpu"
    assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
    assert "reservations" not in cpu["deploy"].get("resources", {})
    assert "TORCH_VARIANT" in gpu["build"]["args"] and gpu["build"]["args"]["TORCH_VARIANT"] != "cpu"
    for service in (gpu, cpu):
        assert "SLIDELANE_WORKER_ID" in " ".join(service["command"]), "replicas need distinct worker ids"


def test_nats_is_a_three_node_jetstream_cluster(compose: dict[str, Any]) -> None:
    for node in NATS_NODES:
        service = compose["services"][node]
        args = service["entrypoint"] + service["command"]
        assert "--jetstream" in args and f"--server_name={node}" in args
        routes = next(a for a in args if a.startswith("--routes="))
        assert {f"nats://{n}:6222" for n in NATS_NODES} == set(routes.split("=", 1)[1].split(","))
        assert "nats" in service["networks"]["backend"]["aliases"]
        assert any(v.endswith(":/data") for v in service["volumes"]), f"{node} needs its own JetStream volume"
    assert len({tuple(compose["services"][n]["volumes"]) for n in NATS_NODES}) == 3
    init = compose["services"]["init-jetstream"]["command"]
    assert init[init.index("--replicas") + 1] == "3"


def test_only_envoy_is_published_on_every_interface(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if name != "envoy":
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert compose["networks"]["backend"]["internal"] is True


def test_services_read_only_and_configured(compose: dict[str, Any]) -> None:
    for name in (*SLIDELANE_SERVICES, *INFERENCE, "envoy"):
        service = compose["services"][name]
        assert service.get("read_only") is True and "/tmp" in service.get("tmpfs", []), name
    for name in (*SLIDELANE_SERVICES, *INFERENCE):
        env = _env(compose["services"][name])
        assert env["SLIDELANE_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert int(env["SLIDELANE_METRICS_PORT"]) == int(env["SLIDELANE_GRPC_PORT"]) + METRICS_OFFSET
        for peer in SLIDELANE_SERVICES:
            assert env[f"SLIDELANE_{peer.upper()}_ADDR"].startswith(f"{peer}:")


def test_prometheus_scrapes_every_metrics_port(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in SLIDELANE_SERVICES:
        port = _env(compose["services"][name])["SLIDELANE_METRICS_PORT"]
        assert jobs[name]["static_configs"][0]["targets"] == [f"{name}:{port}"]
    dns = jobs["inference"]["dns_sd_configs"][0]
    assert set(dns["names"]) == set(INFERENCE)
    for name in INFERENCE:
        assert str(dns["port"]) == _env(compose["services"][name])["SLIDELANE_METRICS_PORT"]


def test_mounted_config_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("../") and not re.search(r"\$\{", source):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name} mounts missing {source}"
