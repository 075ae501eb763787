"""Typed settings, read once per process from the environment.

Every variable is documented in the README's configuration table. Tests pass their
own mapping instead of os.environ.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Offsets from SLIDELANE_PORT_BASE for the internal ports of the embedded cluster.
PORT_OFFSETS = {
    "gateway": 1,
    "scheduler": 2,
    "tenancy": 3,
    "storage": 4,
    "gateway_http": 5,
    "envoy_admin": 9,
    "inference": 10,  # replica i listens on base + 10 + i
}
METRICS_OFFSET = 100  # a service's /metrics port is its gRPC port + 100


class SettingsError(ValueError):
    """A configuration variable is missing or malformed."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything a Slidelane process can be configured with."""

    port: int = 8000
    data_dir: Path = Path("var")
    database_url: str = ""
    nats_url: str = ""
    nats_embedded: bool = True
    nats_port: int = 4322
    slide_roots: tuple[Path, ...] = ()
    max_active_users: int = 3
    inference_workers: int = 2
    instanseg_model: str = ""
    port_base: int = 50050
    service: str = ""
    grpc_port: int = 0
    metrics_port: int = 0
    addresses: dict[str, str] = field(default_factory=dict)
    device: str = "auto"
    # torch intra-op threads per inference replica; 0 = torch's default (every core).
    # The local launcher, running N replicas on one machine, gives each cores // N so
    # they do not oversubscribe the CPU (see services/launcher/app.py).
    torch_threads: int = 0
    max_job_attempts: int = 3
    log_format: str = "json"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    def address_of(self, service: str) -> str:
        """host:port of a peer service (SLIDELANE_<NAME>_ADDR overrides the embedded default)."""
        return self.addresses.get(service) or f"127.0.0.1:{self.port_base + PORT_OFFSETS[service]}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("SLIDELANE_DATA_DIR") or "var").absolute()
        roots_raw = env.get("SLIDELANE_SLIDE_ROOTS") or str(data_dir / "slides")
        slide_roots = tuple(Path(p).absolute() for p in roots_raw.split(":") if p)
        database_url = env.get("SLIDELANE_DATABASE_URL") or f"sqlite+aiosqlite:///{data_dir / 'slidelane.db'}"
        if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise SettingsError(
                f"SLIDELANE_DATABASE_URL={database_url!r}: use sqlite+aiosqlite:///PATH or postgresql+asyncpg://..."
            )
        nats_port = _int(env, "SLIDELANE_NATS_PORT", 4322, 1)
        device = env.get("SLIDELANE_DEVICE") or "auto"
        if device not in ("auto", "cpu", "cuda"):
            raise SettingsError(f"SLIDELANE_DEVICE={device!r}: use auto, cpu or cuda")
        log_format = env.get("SLIDELANE_LOG_FORMAT") or "json"
        if log_format not in ("json", "text"):
            raise SettingsError(f"SLIDELANE_LOG_FORMAT={log_format!r}: use json or text")
        return cls(
            port=_int(env, "SLIDELANE_PORT", 8000, 1),
            data_dir=data_dir,
            database_url=database_url,
            nats_url=env.get("SLIDELANE_NATS_URL") or f"nats://127.0.0.1:{nats_port}",
            nats_port=nats_port,
            nats_embedded=not env.get("SLIDELANE_NATS_URL"),
            slide_roots=slide_roots,
            max_active_users=_int(env, "SLIDELANE_MAX_ACTIVE_USERS", 3, 1),
            inference_workers=_int(env, "SLIDELANE_INFERENCE_WORKERS", 2, 0),
            instanseg_model=env.get("SLIDELANE_INSTANSEG_MODEL") or "",
            port_base=_int(env, "SLIDELANE_PORT_BASE", 50050, 1),
            service=env.get("SLIDELANE_SERVICE") or "",
            grpc_port=_int(env, "SLIDELANE_GRPC_PORT", 0),
            metrics_port=_int(env, "SLIDELANE_METRICS_PORT", 0),
            addresses={
                name: env[f"SLIDELANE_{name.upper()}_ADDR"]
                for name in ("gateway", "scheduler", "tenancy", "storage")
                if env.get(f"SLIDELANE_{name.upper()}_ADDR")
            },
            device=device,
            torch_threads=_int(env, "SLIDELANE_TORCH_THREADS", 0),
            max_job_attempts=_int(env, "SLIDELANE_MAX_JOB_ATTEMPTS", 3, 1),
            log_format=log_format,
        )
