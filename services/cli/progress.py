"""Live progress bars for `slidelane watch`: one bar per job, driven by WatchWorkflow.

Reconnects with after_seq when the stream drops, so no event is missed.
"""

from __future__ import annotations

import grpc
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from services.common.api.slidelane.v1 import events_pb2, types_pb2, workflow_service_pb2, workflow_service_pb2_grpc

FINAL_JOB_STATES = {
    types_pb2.JOB_STATE_SUCCEEDED,
    types_pb2.JOB_STATE_FAILED,
    types_pb2.JOB_STATE_UPSTREAM_FAILED,
    types_pb2.JOB_STATE_CANCELLED,
}
RETRIES = 5


def _name(state: int) -> str:
    return types_pb2.JobState.Name(state).removeprefix("JOB_STATE_")


async def watch_with_bars(stub: workflow_service_pb2_grpc.WorkflowServiceStub, workflow_id: str, metadata: tuple) -> int:
    """Watch until the workflow ends; exit status 0 only when it SUCCEEDED."""
    bars: dict[str, TaskID] = {}
    final_state = types_pb2.WORKFLOW_STATE_UNSPECIFIED
    after_seq = 0
    with Progress(
        TextColumn("{task.description:<24}"),
        TextColumn("{task.fields[state]:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ) as progress:

        def apply(event: events_pb2.WorkflowEvent) -> None:
            nonlocal final_state
            kind = event.WhichOneof("kind")
            if kind == "snapshot":
                for job in event.snapshot.workflow.jobs:
                    bars.setdefault(
                        job.id, progress.add_task(job.job_id, total=job.progress.tiles_total or None, state=_name(job.state))
                    )
                    progress.update(bars[job.id], completed=job.progress.tiles_done, state=_name(job.state))
                    if job.state == types_pb2.JOB_STATE_SUCCEEDED:
                        progress.update(
                            bars[job.id], total=max(job.progress.tiles_total, 1), completed=max(job.progress.tiles_total, 1)
                        )
                final_state = event.snapshot.workflow.state
            elif kind == "job_state_changed" and event.job_state_changed.id in bars:
                change = event.job_state_changed
                progress.update(bars[change.id], state=_name(change.state))
                if change.state == types_pb2.JOB_STATE_SUCCEEDED:
                    task = progress.tasks[bars[change.id]]
                    total = int(task.total or 1)
                    progress.update(bars[change.id], total=total, completed=total)
            elif kind == "job_progressed" and event.job_progressed.id in bars:
                job_progress = event.job_progressed.job_progress
                progress.update(bars[event.job_progressed.id], total=job_progress.tiles_total, completed=job_progress.tiles_done)
            elif kind == "workflow_state_changed":
                final_state = event.workflow_state_changed.state

        for _ in range(RETRIES):
            try:
                stream = stub.WatchWorkflow(
                    workflow_service_pb2.WatchWorkflowRequest(workflow_id=workflow_id, after_seq=after_seq), metadata=metadata
                )
                async for response in stream:
                    if response.event.HasField("watch_lagged"):
                        break
                    apply(response.event)
                    after_seq = max(after_seq, response.event.seq)
                else:
                    break
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
    state = types_pb2.WorkflowState.Name(final_state).removeprefix("WORKFLOW_STATE_")
    print(f"workflow {workflow_id}: {state}")
    return 0 if final_state == types_pb2.WORKFLOW_STATE_SUCCEEDED else 1
