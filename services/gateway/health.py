"""The aggregated health of everything the system needs.

Essential: each internal service SERVING, NATS connected with JetStream answering,
disk space under the data dir. Not essential: GPUs (CPU workers are fine).
The scheduler and tenancy report SERVING only with their DB up, so the DB is
covered through them.

Two doors, one check (`SystemHealth`): the gRPC SystemService.GetHealth (the UI polls
it over gRPC-web) always answers OK with the status in the message, and the
gateway's HTTP side serves GET /health (services.gateway.http), 200 when SERVING and
503 otherwise, with the same message as JSON, for load balancers and curl.
"""

from __future__ import annotations

import asyncio
import shutil

import grpc
from grpc_health.v1 import health_pb2
from nats.aio.client import Client as Nats

from services.common.api.slidelane.v1 import system_service_pb2, system_service_pb2_grpc
from services.common.settings import Settings
from services.gateway.clients import InternalClients
from services.gateway.workers import WorkerRegistry

MIN_FREE_BYTES = 512 * 1024 * 1024
CHECK_TIMEOUT = 2.0
SERVING = "SERVING"
NOT_SERVING = "NOT_SERVING"
Component = system_service_pb2.ComponentHealth


def _reason(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code().name
    return f"{error.__class__.__name__}: {error}" if str(error) else error.__class__.__name__


class SystemHealth:
    """Checks every component at once, each within CHECK_TIMEOUT (a hung part is a down part)."""

    def __init__(self, settings: Settings, clients: InternalClients, nats: Nats, workers: WorkerRegistry) -> None:
        self.settings = settings
        self.clients = clients
        self.nats = nats
        self.workers = workers

    async def check(self) -> system_service_pb2.GetHealthResponse:
        components = await asyncio.gather(*(self._service(name) for name in self.clients.health), self._jetstream(), self._disk())
        components = [*components, self._gpus()]
        healthy = all(c.healthy for c in components if c.essential)
        return system_service_pb2.GetHealthResponse(status=SERVING if healthy else NOT_SERVING, components=components)

    async def _service(self, name: str) -> Component:
        try:
            reply = await self.clients.health[name].Check(health_pb2.HealthCheckRequest(), timeout=CHECK_TIMEOUT)
        except Exception as error:  # any failure to answer is "down", with the reason shown
            return Component(name=name, healthy=False, essential=True, detail=f"unreachable: {_reason(error)}")
        serving = reply.status == health_pb2.HealthCheckResponse.SERVING
        return Component(
            name=name, healthy=serving, essential=True, detail=health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        )

    async def _jetstream(self) -> Component:
        if not self.nats.is_connected:
            return Component(name="nats", healthy=False, essential=True, detail="disconnected")
        try:
            # A hung server keeps the connection open: only the answer proves it works.
            info = await asyncio.wait_for(self.nats.jetstream().account_info(), CHECK_TIMEOUT)
        except Exception as error:
            return Component(name="nats", healthy=False, essential=True, detail=f"JetStream not answering: {_reason(error)}")
        return Component(name="nats", healthy=True, essential=True, detail=f"JetStream streams={info.streams}")

    async def _disk(self) -> Component:
        path = self.settings.data_dir if self.settings.data_dir.exists() else self.settings.data_dir.parent
        free = shutil.disk_usage(path).free
        return Component(
            name="disk",
            healthy=free >= MIN_FREE_BYTES,
            essential=True,
            detail=f"{free / 2**30:.1f} GiB free under {path}",
        )

    def _gpus(self) -> Component:
        workers = self.workers.snapshot()
        gpus = sum(1 for w in workers if w.device == "cuda")
        return Component(
            name="gpu", healthy=gpus > 0, essential=False, detail=f"{gpus} of {len(workers)} inference workers on a GPU"
        )


class SystemServicer(system_service_pb2_grpc.SystemServiceServicer):
    def __init__(self, health: SystemHealth) -> None:
        self.health = health

    async def GetHealth(self, request, context):  # type: ignore[no-untyped-def]
        return await self.health.check()
