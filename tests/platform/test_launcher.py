"""The launcher's promises: a taken port fails fast and clearly; SIGTERM leaves no process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.cluster import ROOT, launcher_env


def test_taken_port_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    env = launcher_env(tmp_path)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", int(env["SLIDELANE_PORT"])))
        holder.listen()
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "services.launcher"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
        )
        took = time.monotonic() - started
    assert result.returncode != 0
    assert took < 15, f"took {took:.1f}s"
    message = result.stderr
    assert env["SLIDELANE_PORT"] in message and "SLIDELANE_PORT" in message, message
    assert "already in use" in message
    assert not (tmp_path / "data" / "nats").exists(), "nothing may start when a port is taken"


def test_sigterm_leaves_no_process_behind(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    # No inference replica: it is the slowest to start and proves nothing more here.
    cluster = cluster_factory(env={"SLIDELANE_INFERENCE_WORKERS": "0"})
    launcher = psutil.Process(cluster.proc.pid)
    children = launcher.children(recursive=True)
    names = {" ".join(c.cmdline()) for c in children}
    assert any("nats-server" in n for n in names), names
    assert any("envoy" in n for n in names), names
    for service in ("gateway", "scheduler", "tenancy", "storage"):
        assert any(f"services.{service}" in n for n in names), names
    started = time.monotonic()
    os.kill(cluster.proc.pid, signal.SIGTERM)
    assert cluster.proc.wait(60) == 0
    stop_seconds = time.monotonic() - started
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"left behind: {[(p.pid, p.cmdline()) for p in alive if p.is_running()]}"
    assert stop_seconds < 40, f"stopping took {stop_seconds:.1f}s"
    assert not (cluster.data_dir / "pids.json").exists()
