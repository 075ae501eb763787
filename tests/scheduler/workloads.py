"""Helpers for scheduler tests: plans without slides, tenants that never collide."""

from __future__ import annotations

import uuid

from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.common.api.slidelane.v1 import events_pb2, types_pb2
from services.scheduler.repository import WorkflowRepository
from services.scheduler.validation import PlannedJob, submission_topological_order

JS = types_pb2.JobState
WS = types_pb2.WorkflowState


def plan(*jobs: tuple[str, str, list[str]]) -> list[PlannedJob]:
    """(job_id, branch, depends_on) triples as a plan, dependencies first."""
    return submission_topological_order([PlannedJob(j, "tissue_mask", "/slides/a.svs", b, list(d)) for j, b, d in jobs])


def new_tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def start(repository: WorkflowRepository, tenant: str, *jobs: tuple[str, str, list[str]]) -> str:
    """Create an admitted workflow."""
    return await repository.create_workflow(tenant, "wf", plan(*jobs), admitted=True)


async def jobs_of(repository: WorkflowRepository, workflow_id: str, tenant: str) -> dict[str, types_pb2.Job]:
    workflow, _ = await repository.get_workflow(tenant, workflow_id)
    return {j.job_id: j for j in workflow.jobs}


async def running(repository: WorkflowRepository, tenant: str) -> list[types_pb2.Job]:
    workflows, _ = await repository.list_workflows(tenant, 500, "")
    return [j for w in workflows for j in w.jobs if j.state == JS.JOB_STATE_RUNNING]


def events_in(rows) -> list[events_pb2.WorkflowEvent]:  # type: ignore[no-untyped-def]
    """The workflow events that outbox rows (or EVENTS messages' payloads) carry, in order."""
    return [e for row in rows if row.seq for e in messaging_pb2.WorkflowEventBatch.FromString(row.payload).events]
