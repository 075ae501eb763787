"""GET /health through Envoy: 200 only while every essential part is up, else 503 naming it.

Parts are frozen with SIGSTOP (a hung process, which a health check must catch, and
which the launcher does not restart meanwhile), then thawed with SIGCONT.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import httpx
import pytest

from services.common.api.slidelane.v1 import system_service_pb2, system_service_pb2_grpc

pytestmark = pytest.mark.timeout(600)


def _wait_for_health(cluster, status_code: int, timeout: float) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The body of the first GET /health that answers status_code."""
    deadline = time.monotonic() + timeout
    while True:
        reply = httpx.get(f"{cluster.public}/health", timeout=10)
        if reply.status_code == status_code:
            assert reply.headers["content-type"].startswith("application/json")
            return reply.json()
        assert time.monotonic() < deadline, f"/health never answered {status_code}; last {reply.status_code}: {reply.text}"
        time.sleep(0.5)


def _unhealthy(body: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["detail"] for c in body["components"] if c["essential"] and not c["healthy"]}


def test_health_answers_503_naming_the_part_that_is_down_and_200_once_it_is_back(cluster_factory):
    cluster = cluster_factory(env={"SLIDELANE_INFERENCE_WORKERS": "0"})
    healthy = _wait_for_health(cluster, 200, 60)
    assert healthy["status"] == "SERVING" and _unhealthy(healthy) == {}
    assert {"scheduler", "tenancy", "storage", "nats", "disk", "gpu"} <= {c["name"] for c in healthy["components"]}
    gpu = next(c for c in healthy["components"] if c["name"] == "gpu")
    assert gpu["essential"] is False, "CPU-only workers are no outage"

    system = system_service_pb2_grpc.SystemServiceStub(cluster.channel())
    for part in ("storage", "nats"):
        pid = cluster.pids()[part]
        os.kill(pid, signal.SIGSTOP)
        try:
            down = _wait_for_health(cluster, 503, 30)
            assert down["status"] == "NOT_SERVING"
            assert part in _unhealthy(down), down
            assert _unhealthy(down)[part], "the detail says what was seen"
            # The gRPC door (the UI's outage banner polls it over gRPC-web) answers OK with the verdict inside.
            reply = system.GetHealth(system_service_pb2.GetHealthRequest(), timeout=15)
            assert reply.status == "NOT_SERVING"
            assert part in {c.name for c in reply.components if not c.healthy}
        finally:
            os.kill(pid, signal.SIGCONT)
        back = _wait_for_health(cluster, 200, 120)
        assert back["status"] == "SERVING"
