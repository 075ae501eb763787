"""Outbox rows for the messages a state change causes: workflow events and job dispatches.

Events of one workflow are numbered 1, 2, ... (workflows.event_seq holds the last),
so a watcher can resume after a reconnect. Callers hold the workflow's row lock
(or SQLite's single writer) while numbering, so no two events share a number.

A transaction writes one outbox row per workflow for its events: a WorkflowEventBatch,
numbered by its last event (its message id, so a re-published row is dropped by
JetStream as a duplicate). Rows of one workflow are merged before they are inserted
(merge_event_rows): serialized protobuf messages concatenate into their merge, so the
batches' bytes are joined, in order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from google.protobuf import struct_pb2

from services.common import jetstream, tracing
from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.common.api.slidelane.v1 import events_pb2, types_pb2
from services.scheduler import convert


class JobLike(Protocol):
    """What events read of a job: a JobRow or an in-memory copy of one."""

    id: str
    job_id: str
    state: str
    attempts: int
    error: str
    tiles_done: int
    tiles_total: int


class WorkflowLike(Protocol):
    """What event numbering reads and advances: a WorkflowRow or an in-memory copy of one."""

    id: str
    tenant_id: str
    state: str
    queue_position: int
    error: str
    event_seq: int
    trace_context: dict[str, str] | None


def trace_headers(workflow: WorkflowLike) -> dict[str, str]:
    """The current trace context (the call that caused the change), else the workflow's own:
    either way the message joins a trace that belongs to the workflow."""
    return tracing.inject() if tracing.in_span() else dict(workflow.trace_context or {})


def job_state_changed(job: JobLike) -> events_pb2.WorkflowEvent:
    return events_pb2.WorkflowEvent(
        job_state_changed=events_pb2.JobStateChanged(
            id=job.id, job_id=job.job_id, state=convert.job_state(job.state), attempts=job.attempts, error=job.error
        )
    )


def workflow_state_changed(workflow: WorkflowLike, progress: types_pb2.Progress | None = None) -> events_pb2.WorkflowEvent:
    return events_pb2.WorkflowEvent(
        workflow_state_changed=events_pb2.WorkflowStateChanged(
            state=convert.workflow_state(workflow.state),
            queue_position=workflow.queue_position,
            error=workflow.error,
            progress=progress,
        )
    )


def job_progressed(job: JobLike, workflow_progress: types_pb2.Progress) -> events_pb2.WorkflowEvent:
    return events_pb2.WorkflowEvent(
        job_progressed=events_pb2.JobProgressed(
            id=job.id,
            job_id=job.job_id,
            job_progress=types_pb2.Progress(tiles_done=job.tiles_done, tiles_total=job.tiles_total),
            workflow_progress=workflow_progress,
        )
    )


def outbox_event_values(workflow: WorkflowLike, events: list[events_pb2.WorkflowEvent], now: datetime) -> list[dict[str, Any]]:
    """Number the events after the workflow's last one (advancing event_seq): the outbox row
    values of their batch ([] for no events)."""
    if not events:
        return []
    for event in events:
        workflow.event_seq += 1
        event.workflow_id = workflow.id
        event.seq = workflow.event_seq
        event.time.FromDatetime(now)
    return [
        {
            "tenant_id": workflow.tenant_id,
            "workflow_id": workflow.id,
            "seq": workflow.event_seq,
            "subject": jetstream.events_subject(workflow.tenant_id, workflow.id),
            "payload": messaging_pb2.WorkflowEventBatch(events=events).SerializeToString(),
            "headers": trace_headers(workflow),
            "created_at": now,
        }
    ]


def merge_event_rows(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One event row per workflow: a workflow's batches joined in order (at the place of its
    first), numbered by the last; dispatch rows (seq 0) as they are."""
    merged: list[dict[str, Any]] = []
    first_of: dict[str, dict[str, Any]] = {}
    for row in values:
        if not row["seq"]:
            merged.append(row)
        elif (first := first_of.get(row["workflow_id"])) is None:
            first_of[row["workflow_id"]] = row = dict(row)
            merged.append(row)
        else:
            first["payload"] += row["payload"]
            first["seq"] = row["seq"]
    return merged


class DispatchedJob(Protocol):
    """What a JobDispatch reads of a job: a JobRow or an in-memory copy of one."""

    id: str
    tenant_id: str
    workflow_id: str
    job_id: str
    job_type: str
    image_path: str
    branch: str
    params: dict[str, Any] | None
    attempts: int


def outbox_dispatch_values(job: DispatchedJob, now: datetime, headers: dict[str, str]) -> dict[str, Any]:
    """Outbox row values of the JobDispatch that tells planners to start this attempt of
    the job; `headers` carry the trace context of the dispatch (published with it)."""
    params = struct_pb2.Struct()
    params.update(job.params or {})
    dispatch = messaging_pb2.JobDispatch(
        tenant_id=job.tenant_id,
        workflow_id=job.workflow_id,
        id=job.id,
        job_id=job.job_id,
        job_type=job.job_type,
        image_path=job.image_path,
        branch=job.branch,
        params=params,
        attempt=job.attempts,
    )
    return {
        "tenant_id": job.tenant_id,
        "workflow_id": job.workflow_id,
        "seq": 0,
        "subject": jetstream.dispatch_subject(job.tenant_id, job.branch),
        "payload": dispatch.SerializeToString(),
        "headers": headers,
        "created_at": now,
    }
