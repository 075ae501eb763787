"""The whole system in real processes for tests: the launcher on free ports.

    from tests.cluster import start_cluster

    with start_cluster(tmp_path, env={"SLIDELANE_MAX_ACTIVE_USERS": "1"}) as cluster:
        cluster.public            # "http://127.0.0.1:PORT"  (Envoy: REST, gRPC-web, UI, /metrics)
        cluster.grpc_target       # "127.0.0.1:PORT"         (native gRPC through Envoy)
        cluster.service_target("scheduler")  # a service's own gRPC port (also "inference-0", ...)
        cluster.restart("scheduler")         # kill -9, the launcher restarts it; waits for SERVING
        cluster.stop()            # SIGTERM to the launcher; returns its exit code

or the pytest fixtures `cluster` (one per session, shared, do not stop it) and
`cluster_factory` (a fresh one per call, for tests that need their own settings or
that kill it). Defaults: one inference replica, SQLite and NATS under tmp; anything
can be overridden through `env` (e.g. SLIDELANE_DATABASE_URL from
tests.databases.fresh_database("postgres", ...), SLIDELANE_INFERENCE_WORKERS).
The developer's own SLIDELANE_* variables are not passed on, except the model ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.settings import PORT_OFFSETS, Settings
from services.launcher.ports import check_ports, required_ports

ROOT = Path(__file__).resolve().parent.parent
READY_LINE = "slidelane ready: "
PASSED_THROUGH = ("SLIDELANE_INSTANSEG_MODEL", "SLIDELANE_DEVICE")


class ClusterError(RuntimeError):
    pass


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pick_ports(env: dict[str, str], attempts: int = 50) -> dict[str, str]:
    """SLIDELANE_PORT, SLIDELANE_PORT_BASE and SLIDELANE_NATS_PORT where every derived port is free."""
    for _ in range(attempts):
        base = random.randrange(20000, 30000, 200)
        chosen = {
            "SLIDELANE_PORT": str(base + 180),
            "SLIDELANE_PORT_BASE": str(base),
            "SLIDELANE_NATS_PORT": str(base + 190),
        }
        for key in chosen:  # explicit choices win
            if env.get(key):
                chosen[key] = env[key]
        settings = Settings.from_env({**env, **chosen})
        if not check_ports(required_ports(settings)):
            return chosen
    raise ClusterError("no free port range found")


def launcher_env(tmp: Path, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIDELANE_") or k in PASSED_THROUGH}
    slides = tmp / "slides"
    slides.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "SLIDELANE_DATA_DIR": str(tmp / "data"),
            "SLIDELANE_SLIDE_ROOTS": str(slides),
            "SLIDELANE_INFERENCE_WORKERS": "1",
            "SLIDELANE_START_TIMEOUT": "150",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides or {})
    env.update(pick_ports(env))
    return env


@dataclass
class Cluster:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path
    settings: Settings
    startup_seconds: float = 0.0
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)

    # --- addresses -------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def port_base(self) -> int:
        return self.settings.port_base

    @property
    def public(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.settings.port}"

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def slide_root(self) -> Path:
        return self.settings.slide_roots[0]

    @property
    def nats_url(self) -> str:
        return self.settings.nats_url

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    @property
    def services(self) -> list[str]:
        """Every supervised gRPC service process: gateway, ..., inference-0, inference-1, ..."""
        names = ["gateway", "scheduler", "tenancy", "storage"]
        return names + [f"inference-{i}" for i in range(self.settings.inference_workers)]

    def service_port(self, name: str) -> int:
        if name.startswith("inference-"):
            return self.port_base + PORT_OFFSETS["inference"] + int(name.split("-", 1)[1])
        return self.port_base + PORT_OFFSETS[name]

    def service_target(self, name: str) -> str:
        return f"127.0.0.1:{self.service_port(name)}"

    def channel(self, name: str | None = None) -> grpc.Channel:
        """A cached sync channel to Envoy (None) or to one service directly."""
        target = self.grpc_target if name is None else self.service_target(name)
        if target not in self._channels:
            self._channels[target] = grpc.insecure_channel(target)
        return self._channels[target]

    # --- processes -------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        """Current pid of every process the launcher supervises (from <data dir>/pids.json)."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            return json.loads((self.data_dir / "pids.json").read_text())
        return {}

    def is_serving(self, name: str, timeout: float = 1.0) -> bool:
        stub = health_pb2_grpc.HealthStub(self.channel(name))
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def wait_serving(self, name: str, timeout: float = 60.0, not_pid: int | None = None) -> int:
        """Until `name` answers SERVING (from a process other than not_pid); returns its pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            pid = self.pids().get(name)
            if pid and pid != not_pid and self.is_serving(name):
                return pid
            time.sleep(0.25)
        raise ClusterError(f"{name} not SERVING after {timeout:.0f}s\n{self.log_tail()}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Signal one supervised process (default kill -9); returns the pid it had.
        The launcher restarts it after a short back-off (0.5 s the first time)."""
        pid = self.pids().get(name)
        if not pid:
            raise ClusterError(f"no pid for {name}: {self.pids()}")
        os.kill(pid, sig)
        return pid

    def restart(self, name: str, timeout: float = 90.0) -> int:
        """kill -9 one service and wait until its replacement is SERVING; returns the new pid."""
        old = self.kill(name)
        return self.wait_serving(name, timeout, not_pid=old)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM the launcher (it stops everything) and wait; SIGKILL past the timeout."""
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    # --- logs --------------------------------------------------------------------------
    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise ClusterError(f"the launcher exited with {self.proc.returncode}\n{self.log_tail()}")


def launch(tmp: Path, env: Mapping[str, str] | None = None, timeout: float = 180.0) -> Cluster:
    """Start the launcher and wait for its ready line (raises ClusterError with its log)."""
    tmp.mkdir(parents=True, exist_ok=True)
    full_env = launcher_env(tmp, env)
    log_path = tmp / "launcher.log"
    started = time.monotonic()
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.launcher"],
            cwd=ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    cluster = Cluster(proc, full_env, log_path, Settings.from_env(full_env))
    deadline = started + timeout
    while time.monotonic() < deadline:
        if READY_LINE in cluster.log_text():
            cluster.startup_seconds = time.monotonic() - started
            return cluster
        if proc.poll() is not None:
            raise ClusterError(f"the launcher exited with {proc.returncode} before ready:\n{cluster.log_tail(60)}")
        time.sleep(0.2)
    cluster.stop()
    raise ClusterError(f"the launcher was not ready after {timeout:.0f}s:\n{cluster.log_tail(60)}")


@contextlib.contextmanager
def start_cluster(tmp: Path, env: Mapping[str, str] | None = None, timeout: float = 180.0) -> Iterator[Cluster]:
    """A running cluster for the block; always stopped afterwards."""
    cluster = launch(tmp, env, timeout)
    try:
        yield cluster
    finally:
        cluster.stop()
