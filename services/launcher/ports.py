"""Every port the embedded cluster listens on, and a check that all are free."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from services.common.settings import METRICS_OFFSET, PORT_OFFSETS, Settings

GRPC_SERVICES = ("gateway", "scheduler", "tenancy", "storage")


@dataclass(frozen=True)
class Port:
    port: int
    what: str  # e.g. "scheduler gRPC"
    variable: str  # the variable to change when it is taken
    formula: str  # how the port is derived, e.g. "SLIDELANE_PORT_BASE+2"


def service_ports(settings: Settings) -> dict[str, int]:
    """gRPC port of every service process: gateway, scheduler, ..., inference-0, inference-1, ..."""
    ports = {name: settings.port_base + PORT_OFFSETS[name] for name in GRPC_SERVICES}
    for i in range(settings.inference_workers):
        ports[f"inference-{i}"] = settings.port_base + PORT_OFFSETS["inference"] + i
    return ports


def required_ports(settings: Settings) -> list[Port]:
    base = "SLIDELANE_PORT_BASE"
    ports = [Port(settings.port, "Envoy public listener", "SLIDELANE_PORT", "SLIDELANE_PORT")]
    for name, port in service_ports(settings).items():
        offset = port - settings.port_base
        ports.append(Port(port, f"{name} gRPC", base, f"{base}+{offset}"))
        ports.append(Port(port + METRICS_OFFSET, f"{name} metrics", base, f"{base}+{offset + METRICS_OFFSET}"))
    for key, what in (("gateway_http", "gateway HTTP (UI, /metrics, /docs)"), ("envoy_admin", "Envoy admin")):
        offset = PORT_OFFSETS[key]
        ports.append(Port(settings.port_base + offset, what, base, f"{base}+{offset}"))
    if settings.nats_embedded:
        ports.append(Port(settings.nats_port, "embedded NATS", "SLIDELANE_NATS_PORT", "SLIDELANE_NATS_PORT"))
    return ports


def port_in_use(port: int) -> bool:
    """True when something listens on the port (on any address). TIME_WAIT does not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def check_ports(ports: list[Port]) -> list[str]:
    """One message per problem: a port taken, out of range, or used twice."""
    problems: list[str] = []
    seen: dict[int, Port] = {}
    for p in ports:
        if not 0 < p.port < 65536:
            problems.append(f"port {p.port} for {p.what} ({p.formula}) is out of range: change {p.variable}")
        elif p.port in seen:
            other = seen[p.port]
            problems.append(
                f"port {p.port} is wanted by both {other.what} ({other.formula}) and {p.what} ({p.formula}): "
                f"change {p.variable} or {other.variable}"
            )
        else:
            seen[p.port] = p
            if port_in_use(p.port):
                problems.append(
                    f"port {p.port} for {p.what} ({p.formula}) is already in use: stop what holds it "
                    f"or set {p.variable} to another value"
                )
    return problems
