"""Scheduler lifecycle: DB and NATS up, then serve and run the loops."""

from __future__ import annotations

from services.common import db
from services.common.api.slidelane.internal.v1 import scheduler_pb2_grpc, tenancy_pb2_grpc
from services.common.server import ServiceApp
from services.common.slides import RememberedSlideChecks
from services.common.tracing import internal_channel
from services.scheduler.admission_client import AdmissionClient
from services.scheduler.cancellation import CancelNotifier
from services.scheduler.loops import CLAIM_BATCH, SchedulerLoops
from services.scheduler.repository import WorkflowRepository
from services.scheduler.servicer import SchedulerServicer


async def build(app: ServiceApp) -> None:
    settings = app.settings
    engine = await app.connect_db()
    js = await app.connect_nats()
    assert app.nats is not None
    repository = WorkflowRepository(
        db.session_factory(engine), dialect=engine.dialect.name, read_sessions=db.session_factory(engine, read_only=True)
    )
    channel = internal_channel(settings.address_of("tenancy"))
    app.on_shutdown(channel.close)
    admission = AdmissionClient(tenancy_pb2_grpc.TenancyServiceStub(channel), repository, claim_limit=CLAIM_BATCH)
    loops = SchedulerLoops(repository, js, admission, settings.max_job_attempts)
    app.add_service(
        scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server,
        SchedulerServicer(
            repository,
            admission,
            CancelNotifier(app.nats),
            settings.slide_roots,
            RememberedSlideChecks(),
            loops.wake,
        ),
        "slidelane.internal.v1.SchedulerService",
    )
    for loop in (loops.dispatch, loops.outbox, loops.status, loops.admission_reconciler, loops.gauges):
        app.add_background(loop)
