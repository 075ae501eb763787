"""The scheduler's side of admission: ask tenancy, apply the answer to workflows."""

from __future__ import annotations

import logging

from services.common.api.slidelane.internal.v1 import tenancy_pb2, tenancy_pb2_grpc
from services.scheduler.repository import WorkflowRepository

log = logging.getLogger(__name__)


class AdmissionClient:
    def __init__(self, tenancy: tenancy_pb2_grpc.TenancyServiceStub, repository: WorkflowRepository, claim_limit: int) -> None:
        self.tenancy = tenancy
        self.repository = repository
        # Admitting also claims up to this many runnable lane heads, in the same transaction:
        # an admitted workflow's first jobs start with no dispatch round of their own.
        self.claim_limit = claim_limit

    async def admit_workflow(self, tenant: str, workflow_id: str, rpc_seconds: float = 10.0) -> None:
        """Ask tenancy; start the tenant's workflows if admitted, else show their position."""
        request = tenancy_pb2.AdmitRequest(tenant_id=tenant, workflow_id=workflow_id)
        reply = await self.tenancy.Admit(request, timeout=rpc_seconds)
        if reply.admitted:
            await self.repository.set_tenant_admitted(tenant, self.claim_limit)
        else:
            await self.repository.update_queue_positions({tenant: reply.queue_position})

    async def release_workflow(self, tenant: str, workflow_id: str) -> None:
        reply = await self.tenancy.Release(tenancy_pb2.ReleaseRequest(tenant_id=tenant, workflow_id=workflow_id), timeout=10)
        for admitted in reply.admitted_tenant_ids:
            await self.repository.set_tenant_admitted(admitted, self.claim_limit)

    async def refresh_positions(self) -> None:
        summary = await self.tenancy.GetAdmissionSummary(tenancy_pb2.GetAdmissionSummaryRequest(), timeout=10)
        await self.repository.update_queue_positions(
            {tenant: position for position, tenant in enumerate(summary.waiting_tenant_ids, start=1)}
        )

    async def reconcile(self) -> None:
        """Admit tenants with QUEUED workflows; release workflows that ended.

        Every release goes through here (a finished workflow stays `released=False`
        until tenancy has heard of it), and Admit and Release are idempotent, so a
        crash of either service converges to the right state.
        """
        for tenant, workflow_id in await self.repository.queued_workflows():
            await self.admit_workflow(tenant, workflow_id)
        released = await self.repository.finished_unreleased_workflows()
        told: list[tuple[str, str]] = []
        try:
            for tenant, workflow_id in released:
                await self.release_workflow(tenant, workflow_id)
                told.append((tenant, workflow_id))
        finally:  # one transaction for the round, marking those tenancy has heard of
            await self.repository.mark_all_released(told)
        # Queue positions move only when a slot freed while someone waits, and a waiting
        # tenant has QUEUED workflows: one summary per round, not one per release.
        if released and await self.repository.queued_workflows():
            await self.refresh_positions()
