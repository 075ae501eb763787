"""SchedulerService: proto <-> the workflow domain (validation, repository, admission)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from services.common.api.slidelane.internal.v1 import scheduler_pb2, scheduler_pb2_grpc
from services.common.auth import require_subject_safe
from services.common.errors import InvalidArgument
from services.scheduler.admission_client import AdmissionClient
from services.scheduler.cancellation import CancelNotifier
from services.scheduler.repository import WorkflowRepository
from services.scheduler.validation import validate_workflow

log = logging.getLogger(__name__)
DEFAULT_PAGE_SIZE = 50
# A user waits on CreateWorkflow's admission call; when tenancy is slower than this the
# workflow is returned QUEUED and the admission reconciler admits it moments later.
ADMIT_ON_CREATE_SECONDS = 3.0


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServiceServicer):
    def __init__(
        self,
        repository: WorkflowRepository,
        admission: AdmissionClient,
        cancel_notifier: CancelNotifier,
        slide_roots: tuple,
        slide_check: Callable[[str], None],
        wake_loops: Callable[[], None],
    ) -> None:
        self.repository = repository
        self.admission = admission
        self.cancel_notifier = cancel_notifier
        self.slide_roots = slide_roots
        self.slide_check = slide_check
        self.wake_loops = wake_loops

    async def CreateWorkflow(self, request, context):  # type: ignore[no-untyped-def]
        tenant = require_subject_safe(request.tenant_id, "x-user-id")
        # Opening slides is blocking file I/O: keep it off the event loop.
        plan = await asyncio.to_thread(validate_workflow, request.name, list(request.jobs), self.slide_roots, self.slide_check)
        # Stored first (QUEUED), admitted second: a crash in between leaves a QUEUED
        # workflow that the admission reconciler admits, never a ghost in tenancy.
        workflow_id = await self.repository.create_workflow(tenant, request.name, plan)
        try:
            await self.admission.admit_workflow(tenant, workflow_id, rpc_seconds=ADMIT_ON_CREATE_SECONDS)
        except grpc.aio.AioRpcError as error:
            if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            # Stored already: the admission reconciler admits it once tenancy answers again.
            # Failing here would invite a retry that submits the workflow twice.
            log.warning("tenancy unreachable; the workflow waits QUEUED", extra={"tenant": tenant, "workflow_id": workflow_id})
            self.wake_loops()
        workflow, _ = await self.repository.get_workflow(tenant, workflow_id)
        log.info("workflow created", extra={"tenant": tenant, "workflow_id": workflow_id})
        return scheduler_pb2.CreateWorkflowResponse(workflow=workflow)

    async def ListWorkflows(self, request, context):  # type: ignore[no-untyped-def]
        workflows, token = await self.repository.list_workflows(
            request.tenant_id, request.page_size or DEFAULT_PAGE_SIZE, request.page_token
        )
        return scheduler_pb2.ListWorkflowsResponse(workflows=workflows, next_page_token=token)

    async def GetWorkflow(self, request, context):  # type: ignore[no-untyped-def]
        workflow, last_seq = await self.repository.get_workflow(request.tenant_id, _required(request.workflow_id, "workflow_id"))
        return scheduler_pb2.GetWorkflowResponse(workflow=workflow, last_event_seq=last_seq)

    async def CancelWorkflow(self, request, context):  # type: ignore[no-untyped-def]
        tenant = request.tenant_id
        workflow_id = _required(request.workflow_id, "workflow_id")
        outcome = await self.repository.cancel_workflow(tenant, workflow_id)
        await self.cancel_notifier.cancel_jobs(tenant, outcome.running_job_ids)
        self.wake_loops()
        workflow, _ = await self.repository.get_workflow(tenant, workflow_id)
        return scheduler_pb2.CancelWorkflowResponse(workflow=workflow)

    async def GetJob(self, request, context):  # type: ignore[no-untyped-def]
        job = await self.repository.get_job(request.tenant_id, _required(request.job_id, "job_id"))
        return scheduler_pb2.GetJobResponse(job=job)

    async def TenantsAdmitted(self, request, context):  # type: ignore[no-untyped-def]
        # Admitting claims the tenants' runnable lane heads itself: no loop to wake.
        for tenant in request.tenant_ids:
            await self.repository.set_tenant_admitted(tenant, self.admission.claim_limit)
        return scheduler_pb2.TenantsAdmittedResponse()

    async def GetLaneStats(self, request, context):  # type: ignore[no-untyped-def]
        lanes = await self.repository.lane_stats(request.tenant_id)
        failures = await self.repository.recent_failures(request.tenant_id, 10)
        return scheduler_pb2.GetLaneStatsResponse(lanes=lanes, recent_failures=failures)


def _required(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(f"{field} is required", field=field)
    return value
