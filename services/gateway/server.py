"""Gateway lifecycle: internal clients, NATS (events, worker heartbeats), servicers, HTTP."""

from __future__ import annotations

from services.common.api.slidelane.v1 import (
    job_service_pb2_grpc,
    metrics_service_pb2_grpc,
    progress_service_pb2_grpc,
    system_service_pb2_grpc,
    visualization_service_pb2_grpc,
    workflow_service_pb2_grpc,
)
from services.common.server import ServiceApp
from services.common.settings import PORT_OFFSETS
from services.gateway.clients import InternalClients
from services.gateway.health import SystemHealth, SystemServicer
from services.gateway.http import start_http
from services.gateway.servicer import JobServicer, MetricsServicer, VisualizationServicer, WorkflowServicer
from services.gateway.watch import ProgressServicer, WatchHub
from services.gateway.workers import WorkerRegistry

PACKAGE = "slidelane.v1"


async def build(app: ServiceApp) -> None:
    settings = app.settings
    await app.connect_nats()
    assert app.nats is not None
    clients = InternalClients.connect(settings)
    app.on_shutdown(clients.close)
    workers = WorkerRegistry()
    await workers.subscribe(app.nats)
    watches = WatchHub(app.nats, clients)
    app.add_service(
        workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server,
        WorkflowServicer(clients, watches),
        f"{PACKAGE}.WorkflowService",
    )
    app.add_service(job_service_pb2_grpc.add_JobServiceServicer_to_server, JobServicer(clients), f"{PACKAGE}.JobService")
    app.add_service(
        progress_service_pb2_grpc.add_ProgressServiceServicer_to_server,
        ProgressServicer(watches),
        f"{PACKAGE}.ProgressService",
    )
    app.add_service(
        visualization_service_pb2_grpc.add_VisualizationServiceServicer_to_server,
        VisualizationServicer(clients),
        f"{PACKAGE}.VisualizationService",
    )
    app.add_service(
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server,
        MetricsServicer(clients, workers),
        f"{PACKAGE}.MetricsService",
    )
    health = SystemHealth(settings, clients, app.nats, workers)
    app.add_service(
        system_service_pb2_grpc.add_SystemServiceServicer_to_server,
        SystemServicer(health),
        f"{PACKAGE}.SystemService",
    )
    runner = await start_http(settings.port_base + PORT_OFFSETS["gateway_http"], settings.slide_roots, health.check)
    app.on_shutdown(runner.cleanup)
