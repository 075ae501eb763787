"""The branch-lane rule, as set-based SQL.

A lane is (tenant, branch). Its jobs run one at a time in lane_seq order, across all
of the tenant's workflows. Job states carry the rest of the rule:

- PENDING: a dependency has not SUCCEEDED yet, or the tenant is not admitted;
- QUEUED: every dependency SUCCEEDED and the workflow is RUNNING (admitted); the job
  waits only for its lane (and, after a transient failure, for next_attempt_at).

So a job is runnable exactly when it is QUEUED, due, no job of its lane is RUNNING,
and no earlier job of its lane is unfinished. An earlier PENDING job (waiting on a
dependency in another lane) blocks the lane: strict FIFO. This cannot deadlock:
lane_seq puts every job after its dependencies, so the lowest unfinished job of an
admitted tenant never waits on anything but its own backoff.

Invariant kept by every writer: a QUEUED job belongs to a RUNNING workflow (the
workflow moves to RUNNING before its jobs become QUEUED, and cancelling or ending it
leaves no job QUEUED), so the claim need not join workflows.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Select, Update, and_, bindparam, exists, func, select, update

from services.common import db
from services.scheduler.models import JobDependencyRow, JobRow

UNFINISHED = ("PENDING", "QUEUED", "RUNNING")
WAITING = ("PENDING", "QUEUED")


# The statements below are built once and reused with bound values: building one
# (aliases, EXISTS) costs milliseconds each time, more than running it on a small DB.
# They name the tables' columns, not the mapped classes' attributes: a Core statement
# skips the ORM's per-execution bookkeeping (about half of a small statement's cost).
NOW = "now"
SUCCEEDED_IDS = "succeeded_ids"
TENANT = "tenant"
TENANTS = "tenants"
WORKFLOW_IDS = "workflow_ids"
JOBS = JobRow.__table__
DEPENDENCIES = JobDependencyRow.__table__


@functools.cache
def runnable_heads(limit: int, columns: tuple[str, ...] = ("id", "workflow_id")) -> Select[Any]:
    """`columns` of runnable lane heads, oldest submissions first; bind NOW."""
    job, other = JOBS.c, JOBS.alias("other").c
    same_lane = and_(other.tenant_id == job.tenant_id, other.branch == job.branch)
    earlier_waiting = exists().where(same_lane, other.state.in_(WAITING), other.lane_seq < job.lane_seq)
    lane_running = exists().where(same_lane, other.state == "RUNNING")
    return (
        select(*(job[name] for name in columns))
        .where(
            job.state == "QUEUED",
            (job.next_attempt_at.is_(None)) | (job.next_attempt_at <= bindparam(NOW, type_=DateTime(timezone=True))),
            ~earlier_waiting,
            ~lane_running,
        )
        .order_by(job.lane_seq)
        .limit(limit)
    )


def dependencies_met() -> ColumnElement[bool]:
    """True for a job none of whose dependencies is short of SUCCEEDED."""
    dependency = JOBS.alias("dependency").c
    return ~exists().where(
        DEPENDENCIES.c.job_id == JOBS.c.id,
        dependency.id == DEPENDENCIES.c.depends_on_id,
        dependency.state != "SUCCEEDED",
    )


@functools.cache
def queue_dependents() -> Update:
    """PENDING -> QUEUED for the direct dependents of the jobs bound as SUCCEEDED_IDS whose
    dependencies all SUCCEEDED; returns what events need, in lane order."""
    job = JOBS.c
    dependents = select(DEPENDENCIES.c.job_id).where(db.in_values(DEPENDENCIES.c.depends_on_id, SUCCEEDED_IDS))
    return (
        update(JOBS)
        .where(db.unselective(job.state == "PENDING"), job.id.in_(dependents), dependencies_met())
        .values(state="QUEUED")
        .returning(job.id, job.job_id, job.workflow_id, job.attempts, job.error, job.lane_seq)
    )


@functools.cache
def queue_ready_jobs() -> Update:
    """PENDING -> QUEUED for the jobs of the workflows bound as WORKFLOW_IDS (of the tenants
    bound as TENANTS, all RUNNING now) whose dependencies all SUCCEEDED; returns what
    events need, as queue_dependents."""
    job = JOBS.c
    return (
        update(JOBS)
        .where(
            db.in_values(job.tenant_id, TENANTS),
            db.in_values(job.workflow_id, WORKFLOW_IDS),
            job.state == "PENDING",
            dependencies_met(),
        )
        .values(state="QUEUED")
        .returning(job.id, job.job_id, job.workflow_id, job.attempts, job.error, job.lane_seq)
    )


@functools.cache
def lane_positions() -> Select[tuple[str, int]]:
    """(job id, unfinished jobs ahead of it in its lane) for the unfinished jobs of the
    workflows bound as WORKFLOW_IDS, all of the tenant bound as TENANT."""
    job = JOBS.c
    ahead = (func.row_number().over(partition_by=job.branch, order_by=job.lane_seq) - 1).label("ahead")
    branches = select(job.branch).where(job.tenant_id == bindparam(TENANT), db.in_values(job.workflow_id, WORKFLOW_IDS))
    lanes = (
        select(job.id, job.workflow_id, ahead)
        .where(job.tenant_id == bindparam(TENANT), job.state.in_(UNFINISHED), job.branch.in_(branches))
        .subquery()
    )
    return select(lanes.c.id, lanes.c.ahead).where(db.in_values(lanes.c.workflow_id, WORKFLOW_IDS))


@functools.cache
def jobs_of_workflows() -> Select[Any]:
    """Every column of the jobs of the workflows bound as WORKFLOW_IDS, of the tenant bound as TENANT."""
    return select(JOBS).where(JOBS.c.tenant_id == bindparam(TENANT), db.in_values(JOBS.c.workflow_id, WORKFLOW_IDS))
