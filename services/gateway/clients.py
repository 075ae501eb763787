"""Channels and stubs to the internal services the gateway forwards to."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2_grpc

from services.common.api.slidelane.internal.v1 import scheduler_pb2_grpc, storage_pb2_grpc, tenancy_pb2_grpc
from services.common.settings import Settings
from services.common.tracing import internal_channel

INTERNAL_SERVICES = ("scheduler", "tenancy", "storage")


@dataclass
class InternalClients:
    scheduler: scheduler_pb2_grpc.SchedulerServiceStub
    tenancy: tenancy_pb2_grpc.TenancyServiceStub
    storage: storage_pb2_grpc.StorageServiceStub
    health: dict[str, health_pb2_grpc.HealthStub]
    channels: list[grpc.aio.Channel]

    @classmethod
    def connect(cls, settings: Settings) -> InternalClients:
        channels = {name: internal_channel(settings.address_of(name)) for name in INTERNAL_SERVICES}
        return cls(
            scheduler=scheduler_pb2_grpc.SchedulerServiceStub(channels["scheduler"]),
            tenancy=tenancy_pb2_grpc.TenancyServiceStub(channels["tenancy"]),
            storage=storage_pb2_grpc.StorageServiceStub(channels["storage"]),
            health={name: health_pb2_grpc.HealthStub(channel) for name, channel in channels.items()},
            channels=list(channels.values()),
        )

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
