"""Child processes of the launcher: start, wait until healthy, restart with backoff, stop.

Every child runs in its own process group (so Ctrl-C in the terminal reaches only the
launcher, which stops the children in order) and gets PR_SET_PDEATHSIG, so it is
signalled even when the launcher itself is killed with SIGKILL. A child that dies while
the cluster runs is logged loudly and restarted after a back-off (0.5 s, doubling to
30 s; reset once it has stayed up for a minute). The current pid of every child is kept
in <data dir>/pids.json (tests use it to kill one service and watch it come back).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.launcher.logs import MergedLog

PR_SET_PDEATHSIG = 1
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0

ReadyCheck = Callable[[], Awaitable[bool]]


def _child_setup(parent_pid: int) -> Callable[[], None]:
    """preexec_fn: die with the launcher (SIGTERM on its death), even if it is SIGKILLed."""

    def setup() -> None:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):  # not Linux: the process group stop still applies
            return
        if os.getppid() != parent_pid:  # the launcher died before prctl took effect
            os._exit(1)

    return setup


def grpc_health_check(port: int, service: str = "") -> ReadyCheck:
    """True once the gRPC server on 127.0.0.1:port answers SERVING."""
    state: dict[str, grpc.aio.Channel] = {}

    async def check() -> bool:
        if "channel" not in state:
            state["channel"] = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stub = health_pb2_grpc.HealthStub(state["channel"])
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
        except grpc.aio.AioRpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    return check


def tcp_check(port: int, host: str = "127.0.0.1") -> ReadyCheck:
    async def check() -> bool:
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    return check


def http_check(port: int, path: str, host: str = "127.0.0.1") -> ReadyCheck:
    """True once GET path answers 200 (Envoy's admin /ready)."""

    async def check() -> bool:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), 2.0)
            return b" 200 " in status
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return check


class Child:
    """One supervised process."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log: MergedLog,
        log_dir: Path,
        ready: ReadyCheck,
        on_pid: Callable[[], None],
        stop_timeout: float = 15.0,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log
        self.log_file = log_dir / f"{name}.log"
        self.ready = ready
        self.on_pid = on_pid
        self.stop_timeout = stop_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.stopping = False
        self.deaths_before_ready = 0
        self.ever_ready = False
        self.started_at = 0.0
        self._backoff = FIRST_BACKOFF
        self._watch: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.returncode is None else None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_child_setup(os.getpid()),
            limit=1 << 20,
        )
        self.started_at = time.monotonic()
        self.on_pid()
        self._reader = asyncio.create_task(self._read(self.proc), name=f"read-{self.name}")
        self._watch = asyncio.create_task(self._watch_exit(self.proc), name=f"watch-{self.name}")

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        with self.log_file.open("a", encoding="utf-8") as raw:
            while True:
                try:
                    line = await proc.stdout.readline()
                except ValueError:  # a line longer than the limit: keep going
                    continue
                if not line:
                    return
                text = line.decode("utf-8", "replace")
                raw.write(text)
                raw.flush()
                self.log.child_line(self.name, text)

    async def _watch_exit(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if self._reader:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), 2.0)
        if self.stopping:
            return
        if not self.ever_ready:
            self.deaths_before_ready += 1
        uptime = time.monotonic() - self.started_at
        if uptime > STABLE_AFTER:
            self._backoff = FIRST_BACKOFF
        delay = self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        self.log.launcher(
            "ERROR",
            f"!!! {self.name} (pid {proc.pid}) died unexpectedly with {how} after {uptime:.1f}s; "
            f"restarting in {delay:.1f}s (raw log: {self.log_file})",
        )
        await asyncio.sleep(delay)
        if self.stopping:
            return
        await self.start()
        if self.ever_ready:
            asyncio.create_task(self._announce_back(), name=f"back-{self.name}")

    async def _announce_back(self) -> None:
        proc = self.proc
        while not self.stopping and proc is self.proc and proc is not None and proc.returncode is None:
            if await self.ready():
                self.log.launcher("INFO", f"{self.name} is back (pid {proc.pid})")
                return
            await asyncio.sleep(0.3)

    async def wait_ready(self, deadline: float) -> None:
        """Until the ready check passes; TimeoutError past the deadline, RuntimeError when it keeps dying."""
        while time.monotonic() < deadline:
            if self.deaths_before_ready >= 3:
                raise RuntimeError(f"{self.name} died {self.deaths_before_ready} times while starting")
            if self.pid is not None and await self.ready():
                self.ever_ready = True
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{self.name} did not become healthy in time")

    async def stop(self) -> None:
        """SIGTERM to its process group, wait, then SIGKILL."""
        self.stopping = True
        if self._watch and not self._watch.done():
            self._watch.cancel()
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.stop_timeout)
        except TimeoutError:
            self.log.launcher("WARN", f"{self.name} (pid {proc.pid}) ignored SIGTERM for {self.stop_timeout:.0f}s: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        # Anything it left in its group (it should leave nothing).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if self._reader:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 2.0)


class Supervisor:
    def __init__(self, log: MergedLog, data_dir: Path) -> None:
        self.log = log
        self.data_dir = data_dir
        self.log_dir = data_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.children: dict[str, Child] = {}
        self.pid_file = data_dir / "pids.json"

    def add(self, name: str, argv: list[str], env: dict[str, str], ready: ReadyCheck, stop_timeout: float = 15.0) -> Child:
        child = Child(name, argv, env, self.log, self.log_dir, ready, self._write_pids, stop_timeout)
        self.children[name] = child
        return child

    def _write_pids(self) -> None:
        pids = {"launcher": os.getpid(), **{n: c.pid for n, c in self.children.items() if c.pid is not None}}
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(pids, indent=1))
        tmp.replace(self.pid_file)

    async def stop(self, names: list[str]) -> None:
        await asyncio.gather(*(self.children[n].stop() for n in names if n in self.children))

    async def stop_all(self, order: list[list[str]]) -> None:
        """Stop in waves (e.g. Envoy, then services, then NATS); whatever is left last."""
        done: set[str] = set()
        for wave in order:
            await self.stop([n for n in wave if n not in done])
            done.update(wave)
        await self.stop([n for n in self.children if n not in done])
        with contextlib.suppress(OSError):
            self.pid_file.unlink()
