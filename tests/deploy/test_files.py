"""Every deploy file parses; the Dockerfile is multi-stage, pinned, non-root; the
container helper scripts work (Envoy accepts the config rendered for named upstreams)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, ROOT, load_yaml_documents

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))
JSON_FILES = sorted(DEPLOY.rglob("*.json"))


def _load_script(name: str) -> ModuleType:
    path = DEPLOY / "docker" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"slidelane_deploy_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_is_something_to_check() -> None:
    assert len(YAML_FILES) >= 15 and len(JSON_FILES) >= 4


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    assert load_yaml_documents(path), f"{path} is empty"


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_json_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)


def _stages(text: str) -> dict[str, str]:
    """stage name -> the image it starts FROM."""
    return {m.group(2): m.group(1) for m in re.finditer(r"^FROM\s+(\S+)\s+AS\s+(\S+)", text, re.M | re.I)}


def test_dockerfile_is_multi_stage_with_pinned_bases() -> None:
    text = DOCKERFILE.read_text()
    stages = _stages(text)
    assert {"python-deps", "ui", "descriptor", "nats", "runtime"} <= stages.keys()
    base_args = dict(re.findall(r"^ARG\s+(\w+_IMAGE)=(\S+)", text, re.M))
    assert base_args, "base images come from ARG ..._IMAGE defaults"
    for arg, image in base_args.items():
        name, _, tag = image.partition(":")
        assert re.search(r"\d+\.\d+", tag), f"{arg}={image}: pin a version tag (or a digest), never latest"
    for stage, base in stages.items():
        assert base.startswith("${") or base in stages, f"stage {stage} starts FROM {base}: use a pinned ARG base"


def test_dockerfile_runs_as_non_root_and_pins_torch_cpu_by_default() -> None:
    text = DOCKERFILE.read_text()
    runtime = text[text.index("AS runtime") :]
    users = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    assert users and not users[-1].startswith(("root", "0")), "the runtime stage must end as a non-root USER"
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, re.M)
    pinned = next(
        d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"] if d.startswith("torch==")
    )
    assert f"ARG TORCH_VERSION={pinned.split('==')[1]}" in text, "Dockerfile's torch must match pyproject.toml"


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv", "var", "services/gateway/ui/node_modules"} <= set(ignored)


def test_scripts_the_manifests_run_exist() -> None:
    referenced = set()
    for path in YAML_FILES:
        referenced |= set(re.findall(r"/app/(deploy/docker/\w+\.py)", path.read_text()))
    assert referenced, "compose and k8s run the helper scripts"
    for rel in referenced:
        assert (ROOT / rel).is_file(), rel


def test_envoy_config_for_named_upstreams_validates(tmp_path: Path) -> None:
    envoy_config = pytest.importorskip("services.launcher.envoy_config")
    entrypoint = _load_script("envoy_entrypoint")
    descriptor = envoy_config.write_descriptor(tmp_path / "slidelane.pb")
    config = entrypoint.render({"SLIDELANE_GATEWAY_ADDR": "gateway:50051", "SLIDELANE_ENVOY_DESCRIPTOR": str(descriptor)})
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for name, port in (("gateway_grpc", 50051), ("gateway_http", 50055)):
        address = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        assert clusters[name]["type"] == "STRICT_DNS"
        assert address["socket_address"] == {"address": "gateway", "port_value": port}
    out = tmp_path / "envoy.yaml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run(
        [envoy_config.envoy_binary(), "--mode", "validate", "-c", str(out), "--disable-hot-restart", "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_entrypoint_rejects_a_malformed_address() -> None:
    entrypoint = _load_script("envoy_entrypoint")
    with pytest.raises(SystemExit, match="SLIDELANE_GATEWAY_HTTP_ADDR"):
        entrypoint.render({"SLIDELANE_GATEWAY_ADDR": "gateway:50051", "SLIDELANE_GATEWAY_HTTP_ADDR": "gateway"})


def test_init_and_healthcheck_scripts_import() -> None:
    init = _load_script("init_jetstream")
    health = _load_script("healthcheck")
    assert callable(init.init) and callable(health.main)
