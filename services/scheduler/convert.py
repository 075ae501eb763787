"""Rows -> slidelane.v1 messages, and the workflow progress rule."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from google.protobuf import struct_pb2, timestamp_pb2

from services.common.api.slidelane.v1 import types_pb2
from services.scheduler.models import JobRow, WorkflowRow

UNFINISHED = ("PENDING", "QUEUED", "RUNNING")
FINAL_JOB_STATES = ("SUCCEEDED", "FAILED", "UPSTREAM_FAILED", "CANCELLED")
FINAL_WORKFLOW_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")


class JobTiles(Protocol):
    """What progress needs of a job: a JobRow, or a (state, tiles_done, tiles_total) result row."""

    @property
    def state(self) -> str: ...
    @property
    def tiles_done(self) -> int: ...
    @property
    def tiles_total(self) -> int: ...


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def job_state(name: str) -> int:
    return types_pb2.JobState.Value(f"JOB_STATE_{name}")


def workflow_state(name: str) -> int:
    return types_pb2.WorkflowState.Value(f"WORKFLOW_STATE_{name}")


def job_message(row: JobRow, queue_position: int = 0) -> types_pb2.Job:
    params = struct_pb2.Struct()
    params.update(row.params or {})
    return types_pb2.Job(
        id=row.id,
        job_id=row.job_id,
        workflow_id=row.workflow_id,
        job_type=row.job_type,
        image_path=row.image_path,
        branch=row.branch,
        depends_on=row.depends_on,
        params=params,
        state=job_state(row.state),
        created_at=timestamp(row.created_at),
        started_at=timestamp(row.started_at),
        finished_at=timestamp(row.finished_at),
        attempts=row.attempts,
        queue_position=queue_position,
        progress=types_pb2.Progress(tiles_done=row.tiles_done, tiles_total=row.tiles_total),
        error=row.error,
    )


@dataclass(frozen=True)
class TileCounts:
    """A workflow's jobs of one state, planned (tiles_total > 0) or not: what progress needs.
    Made from job rows (tile_counts) or by the database (GROUP BY, services.scheduler.outcomes)."""

    state: str
    planned: bool
    jobs: int
    tiles_total: int
    tiles_done: int  # each job's done tiles, at most its plan (0 for unplanned jobs)


def tile_counts(jobs: Iterable[JobTiles]) -> list[TileCounts]:
    groups: dict[tuple[str, bool], list[int]] = {}
    for job in jobs:
        counts = groups.setdefault((job.state, job.tiles_total > 0), [0, 0, 0])
        counts[0] += 1
        counts[1] += job.tiles_total
        counts[2] += min(job.tiles_done, job.tiles_total)
    return [TileCounts(state, planned, *counts) for (state, planned), counts in groups.items()]


def workflow_progress(counts: Sequence[TileCounts], floor_ratio: float) -> tuple[types_pb2.Progress, float]:
    """Tiles done over tiles planned, unplanned jobs estimated, never below floor_ratio.

    A job not planned yet counts as the mean planned size of its siblings (or one
    tile), none of it done; a finished job counts as done whatever it planned. The
    ratio reported is at least the highest reported before, so a bar never goes
    backwards when a plan turns out larger than its estimate or a job is retried.
    """
    planned_jobs = sum(c.jobs for c in counts if c.planned)
    estimate = round(sum(c.tiles_total for c in counts if c.planned) / planned_jobs) if planned_jobs else 1
    done = total = 0
    for c in counts:
        size = c.tiles_total if c.planned else c.jobs * estimate
        total += size
        done += size if c.state in FINAL_JOB_STATES else c.tiles_done
    ratio = max(done / total if total else 0.0, floor_ratio)
    return types_pb2.Progress(tiles_done=max(done, round(ratio * total)), tiles_total=total), ratio


def workflow_message(row: WorkflowRow, jobs: Sequence[JobRow], positions: dict[str, int]) -> types_pb2.Workflow:
    """The workflow with its jobs in submission order; positions: jobs ahead of each in its lane."""
    progress, _ = workflow_progress(tile_counts(jobs), row.progress_ratio)
    return types_pb2.Workflow(
        workflow_id=row.id,
        name=row.name,
        state=workflow_state(row.state),
        created_at=timestamp(row.created_at),
        started_at=timestamp(row.started_at),
        finished_at=timestamp(row.finished_at),
        queue_position=row.queue_position,
        jobs=[job_message(j, positions.get(j.id, 0)) for j in sorted(jobs, key=lambda j: j.lane_seq)],
        progress=progress,
        error=row.error,
    )
