"""Static checks: buf lint, the generated stubs match protos/, Envoy accepts its config."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import google.api

from services.common.settings import Settings
from services.launcher import envoy_config

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_buf_lint_is_clean() -> None:
    deps = ROOT / "build" / "proto-deps" / "google" / "api"
    deps.mkdir(parents=True, exist_ok=True)
    source = Path(google.api.__path__[0])
    for name in ("annotations.proto", "http.proto", "httpbody.proto"):
        shutil.copyfile(source / name, deps / name)
    buf = BIN / "buf" if (BIN / "buf").exists() else shutil.which("buf")
    assert buf, "buf not installed (buf-bin)"
    result = subprocess.run([str(buf), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_stubs_do_not_drift() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_accepts_rendered_config(tmp_path: Path) -> None:
    settings = Settings.from_env({"SLIDELANE_DATA_DIR": str(tmp_path), "SLIDELANE_PORT": "18080"})
    descriptor = envoy_config.write_descriptor(tmp_path / "slidelane.pb")
    config = envoy_config.write_config(settings, descriptor, tmp_path / "envoy.yaml")
    text = config.read_text()
    assert "port_value: 18080" in text and "${" not in text.replace("${name}", "")
    result = envoy_config.validate(config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_descriptor_keeps_every_public_service(tmp_path: Path) -> None:
    from google.protobuf import descriptor_pb2

    descriptor = envoy_config.write_descriptor(tmp_path / "slidelane.pb")
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes())
    services = {f"{f.package}.{s.name}" for f in fds.file for s in f.service}
    for name in ("Workflow", "Job", "Progress", "Visualization", "Metrics", "System"):
        assert f"slidelane.v1.{name}Service" in services
