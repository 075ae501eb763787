"""Tenancy lifecycle: DB up, then serve admission."""

from __future__ import annotations

from services.common import db
from services.common.api.slidelane.internal.v1 import scheduler_pb2_grpc, tenancy_pb2_grpc
from services.common.server import ServiceApp
from services.common.tracing import internal_channel
from services.tenancy.admission import AdmissionRepository
from services.tenancy.servicer import TenancyServicer


async def build(app: ServiceApp) -> None:
    engine = await app.connect_db()
    admission = AdmissionRepository(db.session_factory(engine), app.settings.max_active_users, engine.dialect.name)
    channel = internal_channel(app.settings.address_of("scheduler"))
    app.on_shutdown(channel.close)
    app.add_service(
        tenancy_pb2_grpc.add_TenancyServiceServicer_to_server,
        TenancyServicer(admission, scheduler_pb2_grpc.SchedulerServiceStub(channel)),
        "slidelane.internal.v1.TenancyService",
    )
