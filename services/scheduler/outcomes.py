"""What a worker's report about a job attempt does to the DB, inside the caller's transaction.

Reports come in batches (one JetStream fetch): a batch is one transaction that
locks every workflow it touches up front, in id order, so batches, claims and
cancels never deadlock one another, and the per-transaction cost is paid once.

A report about an attempt that is not the one RUNNING (stale, repeated, another
tenant's job, a cancelled job) changes nothing: applied=False.

Failure semantics: a job that fails for good marks its dependents (transitively)
UPSTREAM_FAILED at once; jobs of the workflow that do not depend on it still run
(a failed branch does not stop the others). The workflow shows the failure in its
error at once and becomes FAILED when its last job reaches a final state, so a
workflow ends (and its tenant's slot is released) only once nothing of it runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, Table, Update, bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common import db, metrics
from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.common.api.slidelane.v1 import events_pb2, types_pb2
from services.scheduler import convert, events, lanes
from services.scheduler.convert import FINAL_WORKFLOW_STATES, UNFINISHED
from services.scheduler.models import JobRow, OutboxRow, WorkflowRow

JOBS: Table = JobRow.__table__  # type: ignore[assignment]
WORKFLOWS: Table = WorkflowRow.__table__  # type: ignore[assignment]
OUTBOX: Table = OutboxRow.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class JobReport:
    """One status report about a job attempt (job_id is the global id)."""

    tenant_id: str
    job_id: str
    attempt: int
    kind: Literal["progress", "succeeded", "failed"]
    tiles_done: int = 0
    tiles_total: int = 0
    message: str = ""
    permanent: bool = False


def report_from_status(status: messaging_pb2.JobStatus) -> JobReport | None:
    """The report a JobStatus message carries (None for a message with no kind)."""
    kind = status.WhichOneof("kind")
    common = (status.tenant_id, status.job_id, status.attempt)
    if kind == "planned":
        return JobReport(*common, "progress", tiles_done=0, tiles_total=status.planned.tiles_total)
    if kind == "progress":
        return JobReport(*common, "progress", tiles_done=status.progress.tiles_done, tiles_total=status.progress.tiles_total)
    if kind == "succeeded":
        return JobReport(*common, "succeeded")
    if kind == "failed":
        return JobReport(*common, "failed", message=status.failed.message, permanent=status.failed.permanent)
    return None


@dataclass(frozen=True)
class WorkflowEnded:
    """A workflow reached a final state: tenancy should be told (release)."""

    tenant_id: str
    workflow_id: str
    state: str


@dataclass(frozen=True)
class JobOutcome:
    """What a report did. applied=False: a stale or repeated report, ignored."""

    applied: bool
    job_state: str | None = None
    workflow_ended: WorkflowEnded | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Transient failures retry while attempts < max_attempts, attempt n waiting
    min(backoff_base * 2**(n-1), backoff_cap) seconds (keeping its lane place)."""

    max_attempts: int
    backoff_base: float
    backoff_cap: float

    def delay(self, attempt: int) -> timedelta:
        return timedelta(seconds=min(self.backoff_base * 2 ** (attempt - 1), self.backoff_cap))


async def lock_workflows(session: AsyncSession, where: ColumnElement[bool]) -> list[WorkflowRow]:
    """Lock workflow rows in id order (one order everywhere: no deadlocks) and read them fresh.

    The workflow row is the lock of its jobs and of its event numbering: every
    transaction that changes a job's state holds it.
    """
    query = select(WorkflowRow).where(where).order_by(WorkflowRow.id).with_for_update().execution_options(populate_existing=True)
    return list((await session.execute(query)).scalars())


async def workflow_progress(session: AsyncSession, workflow: WorkflowRow) -> types_pb2.Progress:
    """The workflow's progress now (raising its never-backwards floor)."""
    await session.flush()
    counts = await tile_counts(session, [workflow.id])
    progress, workflow.progress_ratio = convert.workflow_progress(counts.get(workflow.id, []), workflow.progress_ratio)
    return progress


async def tile_counts(session: AsyncSession, workflow_ids: Sequence[str]) -> dict[str, list[convert.TileCounts]]:
    """Each workflow's convert.TileCounts, counted by the database: a few rows per workflow
    per transaction, not one per job (a chain of 60 read 60 rows for every report)."""
    counts: dict[str, list[convert.TileCounts]] = {}
    for row in await session.execute(_TILE_COUNTS, {WORKFLOW_IDS: list(workflow_ids)}):
        counts.setdefault(row.workflow_id, []).append(
            convert.TileCounts(row.state, bool(row.planned), int(row.jobs), int(row.tiles_total), int(row.tiles_done))
        )
    return counts


@dataclass
class _Job:
    """In-memory copy of the job columns a report reads and changes."""

    id: str
    workflow_id: str
    tenant_id: str
    job_id: str
    job_type: str
    state: str
    attempts: int
    error: str
    tiles_done: int
    tiles_total: int
    started_at: datetime | None
    finished_at: datetime | None
    next_attempt_at: datetime | None
    depends_on: list[str]


@dataclass
class LockedWorkflow:
    """In-memory copy of a locked workflow row, and the events the batch adds to it."""

    id: str
    tenant_id: str
    state: str
    queue_position: int
    error: str
    event_seq: int
    progress_ratio: float
    finished_at: datetime | None
    trace_context: dict[str, str] | None
    events: list[events_pb2.WorkflowEvent] = field(default_factory=list)
    # JobProgressed events whose workflow progress is filled in at the end of the batch.
    progressed: list[events_pb2.WorkflowEvent] = field(default_factory=list)


def update_by_id(table: Table, columns: Sequence[str]) -> Update:
    """UPDATE table SET the columns WHERE id = ..., run with by_id(...) parameters, one
    dict per row (an executemany). Core, not the ORM's bulk UPDATE: half the cost."""
    return table.update().where(table.c.id == bindparam("id_")).values({c: bindparam(f"{c}_") for c in columns})


def by_id(values: dict[str, Any]) -> dict[str, Any]:
    """Parameters of an update_by_id statement (its bind names differ from the columns')."""
    return {f"{key}_": value for key, value in values.items()}


# Built once, with the tables' columns (see services.scheduler.lanes): the hot path's statements.
JOB_IDS = "job_ids"
WORKFLOW_IDS = "workflow_ids"
_JOB_COLUMNS = [JOBS.c[f.name] for f in fields(_Job)]
_WORKFLOW_COLUMNS = [WORKFLOWS.c[f.name] for f in fields(LockedWorkflow) if f.name not in ("events", "progressed")]
_READ_JOBS = select(*_JOB_COLUMNS).where(db.in_values(JOBS.c.id, JOB_IDS))


def _locking(where: ColumnElement[bool]) -> Select[Any]:
    """The workflows `where` selects, locked in id order (as lock_workflows), as LockedWorkflow columns."""
    return select(*_WORKFLOW_COLUMNS).where(where).order_by(WORKFLOWS.c.id).with_for_update()


def _copies(rows: Iterable[Any]) -> dict[str, LockedWorkflow]:
    return {row.id: LockedWorkflow(**row._mapping) for row in rows}


_LOCK_WORKFLOWS_OF_JOBS = _locking(WORKFLOWS.c.id.in_(select(JOBS.c.workflow_id).where(db.in_values(JOBS.c.id, JOB_IDS))))
_LOCK_WORKFLOWS = _locking(db.in_values(WORKFLOWS.c.id, WORKFLOW_IDS))
_LOCK_QUEUED_OF_TENANTS = _locking(db.in_values(WORKFLOWS.c.tenant_id, lanes.TENANTS) & (WORKFLOWS.c.state == "QUEUED"))
_PLANNED = case((JOBS.c.tiles_total > 0, 1), else_=0)
_TILE_COUNTS = (
    select(
        JOBS.c.workflow_id,
        JOBS.c.state,
        _PLANNED.label("planned"),
        func.count().label("jobs"),
        func.sum(JOBS.c.tiles_total).label("tiles_total"),
        func.sum(case((JOBS.c.tiles_done < JOBS.c.tiles_total, JOBS.c.tiles_done), else_=JOBS.c.tiles_total)).label("tiles_done"),
    )
    .where(db.in_values(JOBS.c.workflow_id, WORKFLOW_IDS))
    .group_by(JOBS.c.workflow_id, JOBS.c.state, _PLANNED)
)
_UPDATE_JOBS = update_by_id(JOBS, ["state", "error", "tiles_done", "tiles_total", "finished_at", "next_attempt_at"])
# What a transaction changes on a locked workflow (save_workflows writes them back).
SAVED_WORKFLOW_COLUMNS = ("state", "error", "event_seq", "progress_ratio", "finished_at")
_UPDATE_WORKFLOWS = update_by_id(WORKFLOWS, SAVED_WORKFLOW_COLUMNS)
INSERT_OUTBOX = OUTBOX.insert()


async def lock_queued_workflows(session: AsyncSession, tenants: Sequence[str]) -> dict[str, LockedWorkflow]:
    """The tenants' QUEUED workflows, locked (as lock_workflows), as in-memory copies."""
    return _copies(await session.execute(_LOCK_QUEUED_OF_TENANTS, {lanes.TENANTS: list(tenants)}))


async def lock_workflow_copies(session: AsyncSession, workflow_ids: Sequence[str]) -> dict[str, LockedWorkflow]:
    """lock_workflows by id, as in-memory copies; write their changes with save_workflows."""
    return _copies(await session.execute(_LOCK_WORKFLOWS, {WORKFLOW_IDS: list(workflow_ids)}))


async def save_workflows(session: AsyncSession, workflows: Sequence[LockedWorkflow]) -> None:
    """Write back the locked copies' state, error, event numbering, progress and end."""
    if workflows:
        await session.execute(_UPDATE_WORKFLOWS, [by_id(saved_workflow_values(w)) for w in workflows])


@dataclass
class AppliedReports:
    """A batch of reports applied to its jobs (written, dependents queued or failed), with
    what finish_reports needs to work out the workflows' progress and ends."""

    workflows: dict[str, LockedWorkflow]
    outcomes: list[JobOutcome]
    last_final_report: dict[str, int]  # workflow id -> index of its last report that ended a job
    now: datetime


async def apply_reports(
    session: AsyncSession, reports: Sequence[JobReport], policy: RetryPolicy, now: datetime, outbox: list[dict[str, Any]]
) -> list[JobOutcome]:
    """Apply the reports in order; one outcome per report.

    Set-based: a fixed number of statements per batch, whatever its size. The
    workflow progress carried by a batch's JobProgressed events is the one at the
    end of the batch. The event rows are appended to `outbox`, for the caller to insert
    in the same transaction (their numbers are taken here); the locked workflows are
    written back. apply_job_reports and finish_reports are its two halves, for a caller
    that does more in between (the status batch's claim).
    """
    applied = await apply_job_reports(session, reports, policy, now)
    outbox += await finish_reports(session, applied)
    await save_workflows(session, [w for w in applied.workflows.values() if w.events])
    return applied.outcomes


async def apply_job_reports(
    session: AsyncSession, reports: Sequence[JobReport], policy: RetryPolicy, now: datetime
) -> AppliedReports:
    """The first half of apply_reports: lock the reports' workflows, change and write their
    jobs, queue the dependents of the succeeded ones and fail those of the failed ones."""
    job_ids = {JOB_IDS: list({r.job_id for r in reports})}
    workflows = _copies(await session.execute(_LOCK_WORKFLOWS_OF_JOBS, job_ids))
    jobs = {row.id: _Job(**row._mapping) for row in await session.execute(_READ_JOBS, job_ids)}
    outcomes: list[JobOutcome] = []
    changed: dict[str, _Job] = {}
    last_final_report: dict[str, int] = {}
    for index, report in enumerate(reports):
        job = jobs.get(report.job_id)
        if job is None or job.tenant_id != report.tenant_id or job.state != "RUNNING" or job.attempts != report.attempt:
            outcomes.append(JobOutcome(applied=False))
            continue
        outcomes.append(_apply(workflows[job.workflow_id], job, report, policy, now))
        changed[job.id] = job
        if job.state in ("SUCCEEDED", "FAILED"):
            last_final_report[job.workflow_id] = index
    succeeded = [j.id for j in changed.values() if j.state == "SUCCEEDED"]
    failed = [j for j in changed.values() if j.state == "FAILED"]
    if changed:
        await session.execute(_UPDATE_JOBS, [by_id(_job_values(j)) for j in changed.values()])
    if succeeded:
        await _queue_dependents(session, workflows, succeeded)
    for job in failed:
        await _fail_dependents(session, workflows[job.workflow_id], job, now)
    for job in [*failed, *(jobs[i] for i in succeeded)]:
        _observe_final(job)
    return AppliedReports(workflows, outcomes, last_final_report, now)


async def finish_reports(session: AsyncSession, applied: AppliedReports) -> list[dict[str, Any]]:
    """The second half of apply_reports: the workflows' progress and ends (marked in the
    outcomes), and the outbox rows of the batch's events, numbered now. The locked
    workflows are left for the caller to write (save_workflows)."""
    for workflow_id, workflow_ended in (await _finish_workflows(session, applied.workflows, applied.now)).items():
        index = applied.last_final_report[workflow_id]
        applied.outcomes[index] = replace(applied.outcomes[index], workflow_ended=workflow_ended)
    return [v for w in applied.workflows.values() for v in events.outbox_event_values(w, w.events, applied.now)]


def _apply(workflow: LockedWorkflow, job: _Job, report: JobReport, policy: RetryPolicy, now: datetime) -> JobOutcome:
    """A report's effect on the in-memory job and the workflow's event list."""
    if report.kind == "progress":
        tiles_done = max(job.tiles_done, report.tiles_done)  # reports may arrive out of order
        if (job.tiles_done, job.tiles_total) != (tiles_done, report.tiles_total):
            job.tiles_done, job.tiles_total = tiles_done, report.tiles_total
            event = events.job_progressed(job, types_pb2.Progress())
            workflow.events.append(event)
            workflow.progressed.append(event)
        return JobOutcome(applied=True, job_state=job.state)
    if report.kind == "succeeded":
        job.state, job.finished_at, job.tiles_done, job.error = "SUCCEEDED", now, job.tiles_total, ""
        workflow.events.append(events.job_state_changed(job))
        return JobOutcome(applied=True, job_state=job.state)
    job.error = report.message
    if not report.permanent and job.attempts < policy.max_attempts:
        job.state, job.next_attempt_at = "QUEUED", now + policy.delay(job.attempts)
        workflow.events.append(events.job_state_changed(job))
        return JobOutcome(applied=True, job_state=job.state, retry_at=job.next_attempt_at)
    job.state, job.finished_at = "FAILED", now
    if not workflow.error:
        workflow.error = f"job {job.job_id!r} failed: {report.message}"
    workflow.events.append(events.job_state_changed(job))
    return JobOutcome(applied=True, job_state=job.state)


async def _queue_dependents(session: AsyncSession, workflows: dict[str, LockedWorkflow], succeeded: list[str]) -> None:
    """PENDING -> QUEUED for dependents of the succeeded jobs whose dependencies all SUCCEEDED."""
    await queue_jobs(session, workflows, lanes.queue_dependents(), {lanes.SUCCEEDED_IDS: succeeded})


async def queue_jobs(
    session: AsyncSession, workflows: dict[str, LockedWorkflow], statement: Update, params: dict[str, Any]
) -> None:
    """Run a PENDING -> QUEUED statement of services.scheduler.lanes; the JobStateChanged
    events go to the locked workflows, in lane order."""
    for row in sorted(await session.execute(statement, params), key=lambda r: r.lane_seq):
        workflows[row.workflow_id].events.append(
            events_pb2.WorkflowEvent(
                job_state_changed=events_pb2.JobStateChanged(
                    id=row.id, job_id=row.job_id, state=convert.job_state("QUEUED"), attempts=row.attempts, error=row.error
                )
            )
        )


async def _fail_dependents(session: AsyncSession, workflow: LockedWorkflow, failed: _Job, now: datetime) -> None:
    """Mark every job that depends, transitively, on `failed` UPSTREAM_FAILED."""
    query = (
        select(*_JOB_COLUMNS)
        .where(JOBS.c.workflow_id == failed.workflow_id, JOBS.c.state == "PENDING")
        .order_by(JOBS.c.lane_seq)  # dependencies first, so one pass reaches every descendant
    )
    broken = {failed.job_id}
    marked = []
    for row in await session.execute(query):
        job = _Job(**row._mapping)
        culprits = sorted(broken.intersection(job.depends_on))
        if culprits:
            job.state, job.finished_at = "UPSTREAM_FAILED", now
            job.error = f"dependency {culprits[0]!r} did not succeed"
            broken.add(job.job_id)
            marked.append(job)
            workflow.events.append(events.job_state_changed(job))
    if marked:
        await session.execute(_UPDATE_JOBS, [by_id(_job_values(j)) for j in marked])


async def _finish_workflows(
    session: AsyncSession, workflows: dict[str, LockedWorkflow], now: datetime
) -> dict[str, WorkflowEnded]:
    """Fill in progress, and end (SUCCEEDED or FAILED) the workflows with no unfinished job left."""
    active = [w for w in workflows.values() if w.events]
    if not active:
        return {}
    counts = await tile_counts(session, [w.id for w in active])
    ended: dict[str, WorkflowEnded] = {}
    for workflow in active:
        progress, workflow.progress_ratio = convert.workflow_progress(counts[workflow.id], workflow.progress_ratio)
        for event in workflow.progressed:
            event.job_progressed.workflow_progress.CopyFrom(progress)
        states = {c.state for c in counts[workflow.id]}
        if states.isdisjoint(UNFINISHED) and workflow.state not in FINAL_WORKFLOW_STATES:
            workflow.state = "FAILED" if "FAILED" in states else "SUCCEEDED"
            workflow.finished_at = now
            workflow.events.append(events.workflow_state_changed(workflow, progress))
            ended[workflow.id] = WorkflowEnded(workflow.tenant_id, workflow.id, workflow.state)
    return ended


def _job_values(job: _Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state,
        "error": job.error,
        "tiles_done": job.tiles_done,
        "tiles_total": job.tiles_total,
        "finished_at": job.finished_at,
        "next_attempt_at": job.next_attempt_at,
    }


def saved_workflow_values(workflow: LockedWorkflow) -> dict[str, Any]:
    """The id and SAVED_WORKFLOW_COLUMNS of a locked copy: what save_workflows writes."""
    return {"id": workflow.id, **{name: getattr(workflow, name) for name in SAVED_WORKFLOW_COLUMNS}}


def _observe_final(job: _Job) -> None:
    """Count a job that reached a final state."""
    metrics.JOBS_TOTAL.labels(job.job_type, job.state.lower()).inc()
    if job.started_at is not None and job.finished_at is not None:
        started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=UTC)
        finished = job.finished_at if job.finished_at.tzinfo else job.finished_at.replace(tzinfo=UTC)
        metrics.JOB_LATENCY.labels(job.job_type).observe((finished - started).total_seconds())
