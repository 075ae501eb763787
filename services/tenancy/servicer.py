"""TenancyService: proto <-> AdmissionRepository, and telling the scheduler who got in."""

from __future__ import annotations

import logging

import grpc

from services.common.api.slidelane.internal.v1 import scheduler_pb2, scheduler_pb2_grpc, tenancy_pb2, tenancy_pb2_grpc
from services.common.auth import require_subject_safe
from services.tenancy.admission import AdmissionRepository

log = logging.getLogger(__name__)


class TenancyServicer(tenancy_pb2_grpc.TenancyServiceServicer):
    def __init__(self, admission: AdmissionRepository, scheduler: scheduler_pb2_grpc.SchedulerServiceStub) -> None:
        self.admission = admission
        self.scheduler = scheduler

    async def Admit(self, request, context):  # type: ignore[no-untyped-def]
        tenant = require_subject_safe(request.tenant_id, "tenant_id")
        admitted, position = await self.admission.admit(tenant, request.workflow_id)
        return tenancy_pb2.AdmitResponse(admitted=admitted, queue_position=position)

    async def Release(self, request, context):  # type: ignore[no-untyped-def]
        tenant = require_subject_safe(request.tenant_id, "tenant_id")
        admitted = await self.admission.release(tenant, request.workflow_id)
        if admitted:
            log.info("tenants admitted: %s", ", ".join(admitted))
            try:
                await self.scheduler.TenantsAdmitted(scheduler_pb2.TenantsAdmittedRequest(tenant_ids=admitted), timeout=5)
            except grpc.aio.AioRpcError as error:
                # The scheduler reconciles admission on its own, so a lost notification only delays.
                log.warning("could not tell the scheduler about admitted tenants: %s", error.code().name)
        return tenancy_pb2.ReleaseResponse(admitted_tenant_ids=admitted)

    async def GetAdmission(self, request, context):  # type: ignore[no-untyped-def]
        admitted, position = await self.admission.get(request.tenant_id)
        return tenancy_pb2.GetAdmissionResponse(admitted=admitted, queue_position=position)

    async def GetAdmissionSummary(self, request, context):  # type: ignore[no-untyped-def]
        active, waiting = await self.admission.summary()
        return tenancy_pb2.GetAdmissionSummaryResponse(
            active_tenant_ids=active, waiting_tenant_ids=waiting, max_active_users=self.admission.max_active
        )
