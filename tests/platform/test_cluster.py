"""The running system, through Envoy and service by service (one shared cluster)."""

from __future__ import annotations

import os
import struct

import grpc
import httpx
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.common.api.slidelane.v1 import (
    system_service_pb2,
    system_service_pb2_grpc,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)
from tests.cluster import Cluster

PUBLIC = [f"slidelane.v1.{n}Service" for n in ("Workflow", "Job", "Progress", "Visualization", "Metrics", "System")]
EXPECTED = {
    "gateway": PUBLIC,
    "scheduler": ["slidelane.internal.v1.SchedulerService"],
    "tenancy": ["slidelane.internal.v1.TenancyService"],
    "storage": ["slidelane.internal.v1.StorageService"],
    "inference": ["slidelane.internal.v1.InferenceService"],
}
USER = {"X-User-ID": "alice"}


def reflected_services(channel: grpc.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    return {s.name for reply in replies for s in reply.list_services_response.service}


def test_every_service_and_replica_is_serving(cluster: Cluster) -> None:
    assert len([n for n in cluster.services if n.startswith("inference-")]) == cluster.settings.inference_workers
    for name in cluster.services:
        stub = health_pb2_grpc.HealthStub(cluster.channel(name))
        reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
        for service in EXPECTED[name.split("-")[0]]:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, f"{name}: {service}"


def test_replicas_share_the_cores_between_their_torch_threads(cluster: Cluster) -> None:
    """Unset SLIDELANE_TORCH_THREADS: the launcher gives each replica cores // replicas."""
    expected = max(1, len(os.sched_getaffinity(0)) // cluster.settings.inference_workers)
    for name in (n for n in cluster.services if n.startswith("inference-")):
        assert psutil.Process(cluster.pids()[name]).environ()["SLIDELANE_TORCH_THREADS"] == str(expected)
        log = (cluster.data_dir / "logs" / f"{name}.log").read_text()
        assert f"({expected} torch threads)" in log, log[-2000:]


def test_reflection_lists_each_services_names(cluster: Cluster) -> None:
    for name in cluster.services:
        names = reflected_services(cluster.channel(name))
        missing = set(EXPECTED[name.split("-")[0]]) - names
        assert not missing, f"{name} does not reflect {missing} (has {sorted(names)})"
        assert "grpc.health.v1.Health" in names


def test_native_grpc_through_envoy(cluster: Cluster) -> None:
    stub = system_service_pb2_grpc.SystemServiceStub(cluster.channel())
    reply = stub.GetHealth(system_service_pb2.GetHealthRequest(), timeout=10)
    assert reply.status in ("SERVING", "NOT_SERVING")
    assert reply.components
    # x-user-id metadata reaches the gateway: with it ListWorkflows answers, without it UNAUTHENTICATED.
    workflows = workflow_service_pb2_grpc.WorkflowServiceStub(cluster.channel())
    workflows.ListWorkflows(workflow_service_pb2.ListWorkflowsRequest(), metadata=[("x-user-id", "alice")], timeout=10)
    with pytest.raises(grpc.RpcError) as refused:
        workflows.ListWorkflows(workflow_service_pb2.ListWorkflowsRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def grpc_web_frames(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    """Split a gRPC-web response into its data frames and its trailers (flag 0x80)."""
    messages: list[bytes] = []
    trailers: dict[str, str] = {}
    at = 0
    while at < len(body):
        flag, length = struct.unpack(">BI", body[at : at + 5])
        payload = body[at + 5 : at + 5 + length]
        at += 5 + length
        if flag & 0x80:
            for line in payload.decode().split("\r\n"):
                if line:
                    key, _, value = line.partition(":")
                    trailers[key.strip().lower()] = value.strip()
        else:
            messages.append(payload)
    return messages, trailers


def test_grpc_web_as_a_browser_frames_it(cluster: Cluster) -> None:
    request = system_service_pb2.GetHealthRequest().SerializeToString()
    frame = struct.pack(">BI", 0, len(request)) + request
    headers = {
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
        "x-user-agent": "grpc-web-javascript/0.1",
        "origin": "http://localhost:5173",
        **USER,
    }
    reply = httpx.post(f"{cluster.public}/slidelane.v1.SystemService/GetHealth", content=frame, headers=headers, timeout=10)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/grpc-web")
    assert reply.headers.get("access-control-allow-origin") == "http://localhost:5173"
    messages, trailers = grpc_web_frames(reply.content)
    assert trailers.get("grpc-status") == "0", trailers
    assert len(messages) == 1
    health = system_service_pb2.GetHealthResponse.FromString(messages[0])
    assert health.status in ("SERVING", "NOT_SERVING")


def test_cors_preflight(cluster: Cluster) -> None:
    reply = httpx.options(
        f"{cluster.public}/slidelane.v1.WorkflowService/ListWorkflows",
        headers={
            "origin": "http://localhost:5173",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-grpc-web,x-user-id,traceparent",
        },
        timeout=10,
    )
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == "http://localhost:5173"
    allowed = reply.headers["access-control-allow-headers"].lower()
    for header in ("x-user-id", "x-grpc-web", "content-type", "traceparent", "grpc-timeout"):
        assert header in allowed
    # exposed headers are sent on actual responses, not on preflights


def test_rest_through_envoy(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.public, timeout=10) as client:
        health = client.get("/health")
        assert health.status_code in (200, 503), health.text
        assert health.json()["status"] in ("SERVING", "NOT_SERVING")
        listed = client.get("/api/workflows", headers=USER)
        assert listed.status_code == 200, listed.text
        assert isinstance(listed.json(), dict)
        refused = client.get("/api/workflows")
        assert refused.status_code == 401, refused.text
        unknown = client.get("/api/no-such-thing", headers=USER)
        assert unknown.status_code == 404
        ignored = client.get("/api/workflows", params={"no_such_param": "1"}, headers=USER)
        assert ignored.status_code == 200


def test_static_page_and_metrics_through_envoy(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.public, timeout=10) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert "# TYPE" in metrics.text


def test_a_killed_service_is_restarted(cluster: Cluster) -> None:
    old = cluster.pids()["tenancy"]
    new = cluster.restart("tenancy")
    assert new != old
    assert "tenancy (pid" in cluster.log_text() and "died unexpectedly" in cluster.log_text()
    stub = system_service_pb2_grpc.SystemServiceStub(cluster.channel())
    assert stub.GetHealth(system_service_pb2.GetHealthRequest(), timeout=10).components
