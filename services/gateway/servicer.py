"""Public API servicers: identity and isolation here, logic in the internal services.

Each call takes the tenant from x-user-id and forwards it explicitly, so every
internal query is scoped to that tenant. Errors from internal services pass through
unchanged (ErrorMappingInterceptor forwards their status and details).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.api import httpbody_pb2

from services.common.api.slidelane.internal.v1 import scheduler_pb2, storage_pb2, tenancy_pb2
from services.common.api.slidelane.v1 import (
    job_service_pb2,
    job_service_pb2_grpc,
    metrics_service_pb2,
    metrics_service_pb2_grpc,
    visualization_service_pb2_grpc,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)
from services.common.auth import tenant_of
from services.common.errors import InvalidArgument
from services.gateway.clients import InternalClients
from services.gateway.watch import WatchHub, watch_workflow
from services.gateway.workers import WorkerRegistry

MAX_PAGE_SIZE = 500


class WorkflowServicer(workflow_service_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, clients: InternalClients, watches: WatchHub) -> None:
        self.clients = clients
        self.watches = watches

    async def CreateWorkflow(self, request, context):  # type: ignore[no-untyped-def]
        tenant = tenant_of(context)
        reply = await self.clients.scheduler.CreateWorkflow(
            scheduler_pb2.CreateWorkflowRequest(tenant_id=tenant, name=request.name, jobs=request.jobs)
        )
        return workflow_service_pb2.CreateWorkflowResponse(workflow=reply.workflow)

    async def ListWorkflows(self, request, context):  # type: ignore[no-untyped-def]
        tenant = tenant_of(context)
        if request.page_size < 0 or request.page_size > MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size must be between 0 and {MAX_PAGE_SIZE}", field="page_size")
        reply = await self.clients.scheduler.ListWorkflows(
            scheduler_pb2.ListWorkflowsRequest(tenant_id=tenant, page_size=request.page_size, page_token=request.page_token)
        )
        return workflow_service_pb2.ListWorkflowsResponse(workflows=reply.workflows, next_page_token=reply.next_page_token)

    async def GetWorkflow(self, request, context):  # type: ignore[no-untyped-def]
        reply = await self.clients.scheduler.GetWorkflow(
            scheduler_pb2.GetWorkflowRequest(tenant_id=tenant_of(context), workflow_id=request.workflow_id)
        )
        return workflow_service_pb2.GetWorkflowResponse(workflow=reply.workflow)

    async def CancelWorkflow(self, request, context):  # type: ignore[no-untyped-def]
        reply = await self.clients.scheduler.CancelWorkflow(
            scheduler_pb2.CancelWorkflowRequest(tenant_id=tenant_of(context), workflow_id=request.workflow_id)
        )
        return workflow_service_pb2.CancelWorkflowResponse(workflow=reply.workflow)

    async def WatchWorkflow(self, request, context):  # type: ignore[no-untyped-def]
        tenant = tenant_of(context)
        if request.after_seq < 0:
            raise InvalidArgument("after_seq must not be negative", field="after_seq")
        async for response in watch_workflow(self.watches, tenant, request.workflow_id, request.after_seq):
            yield response


class JobServicer(job_service_pb2_grpc.JobServiceServicer):
    def __init__(self, clients: InternalClients) -> None:
        self.clients = clients

    async def GetJob(self, request, context):  # type: ignore[no-untyped-def]
        reply = await self.clients.scheduler.GetJob(
            scheduler_pb2.GetJobRequest(tenant_id=tenant_of(context), job_id=request.job_id)
        )
        return job_service_pb2.GetJobResponse(job=reply.job)

    async def GetJobResults(self, request, context) -> AsyncIterator[httpbody_pb2.HttpBody]:  # type: ignore[no-untyped-def]
        tenant = tenant_of(context)
        # The scheduler answers NOT_FOUND for another tenant's job before storage is asked.
        await self.clients.scheduler.GetJob(scheduler_pb2.GetJobRequest(tenant_id=tenant, job_id=request.job_id))
        stream = self.clients.storage.GetJobResults(
            storage_pb2.GetJobResultsRequest(tenant_id=tenant, job_id=request.job_id, format=request.format)
        )
        async for chunk in stream:
            yield chunk


class VisualizationServicer(visualization_service_pb2_grpc.VisualizationServiceServicer):
    def __init__(self, clients: InternalClients) -> None:
        self.clients = clients

    async def GetVisualization(self, request, context):  # type: ignore[no-untyped-def]
        tenant = tenant_of(context)
        await self.clients.scheduler.GetJob(scheduler_pb2.GetJobRequest(tenant_id=tenant, job_id=request.job_id))
        reply = await self.clients.storage.GetVisualization(
            storage_pb2.GetVisualizationRequest(tenant_id=tenant, job_id=request.job_id)
        )
        return reply.visualization

    async def GetSlideTile(self, request, context):  # type: ignore[no-untyped-def]
        tenant = tenant_of(context)
        await self.clients.scheduler.GetJob(scheduler_pb2.GetJobRequest(tenant_id=tenant, job_id=request.job_id))
        return await self.clients.storage.GetSlideTile(storage_pb2.GetSlideTileRequest(tenant_id=tenant, request=request))

    async def ListCells(self, request, context):  # type: ignore[no-untyped-def]
        tenant = tenant_of(context)
        await self.clients.scheduler.GetJob(scheduler_pb2.GetJobRequest(tenant_id=tenant, job_id=request.job_id))
        reply = await self.clients.storage.ListCells(storage_pb2.ListCellsRequest(tenant_id=tenant, request=request))
        return reply.cells


class MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, clients: InternalClients, workers: WorkerRegistry) -> None:
        self.clients = clients
        self.workers = workers

    async def GetDashboard(self, request, context):  # type: ignore[no-untyped-def]
        tenant = tenant_of(context)
        summary = await self.clients.tenancy.GetAdmissionSummary(tenancy_pb2.GetAdmissionSummaryRequest())
        lanes = await self.clients.scheduler.GetLaneStats(scheduler_pb2.GetLaneStatsRequest(tenant_id=tenant))
        waiting = list(summary.waiting_tenant_ids)
        return metrics_service_pb2.GetDashboardResponse(
            active_users=len(summary.active_tenant_ids),
            max_active_users=summary.max_active_users,
            admission_queue_length=len(waiting),
            my_queue_position=waiting.index(tenant) + 1 if tenant in waiting else 0,
            lanes=lanes.lanes,
            workers=self.workers.snapshot(),
            recent_failures=lanes.recent_failures,
        )
