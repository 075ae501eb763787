"""Workflows and jobs in the DB: every query filtered by tenant in SQL.

State changes and the messages they cause (events, job dispatches) are written in
one transaction (a transactional outbox), so a crash can delay a message but never
lose it. Branch lanes are serialised here, not in NATS: a job runs only as the
head of its (tenant, branch) lane. On PostgreSQL the claim takes a transaction
advisory lock so several scheduler replicas never run two jobs of one lane at once;
on SQLite every transaction begins IMMEDIATE (one writer at a time).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from google.protobuf import struct_pb2
from sqlalchemy import and_, exists, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from services.common import jetstream, metrics
from services.common.api.slidelane.internal.v1 import messaging_pb2
from services.common.api.slidelane.v1 import events_pb2, metrics_service_pb2, types_pb2
from services.common.errors import InvalidArgument, NotFound
from services.scheduler import convert
from services.scheduler.convert import FINAL_JOB_STATES, UNFINISHED
from services.scheduler.models import JobRow, LaneSeqRow, OutboxRow, WorkflowRow
from services.scheduler.validation import PlannedJob

CLAIM_LOCK_KEY = 727_001  # pg_advisory_xact_lock key serialising claims across replicas
FINAL_WORKFLOW_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CancelOutcome:
    running_job_ids: list[str]


class WorkflowRepository:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        dialect: str = "sqlite",
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
    ) -> None:
        self.sessions = sessions
        self.dialect = dialect
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap

    # ----- events -------------------------------------------------------------

    def _emit(self, session: AsyncSession, workflow: WorkflowRow, *events: events_pb2.WorkflowEvent) -> None:
        """Number the events after the workflow's last one and queue them in the outbox."""
        now = utcnow()
        for event in events:
            workflow.event_seq += 1
            event.workflow_id = workflow.id
            event.seq = workflow.event_seq
            event.time.FromDatetime(now)
            session.add(
                OutboxRow(
                    subject=jetstream.events_subject(workflow.tenant_id, workflow.id),
                    payload=event.SerializeToString(),
                    headers={},
                    published=False,
                )
            )

    @staticmethod
    def _job_event(job: JobRow) -> events_pb2.WorkflowEvent:
        return events_pb2.WorkflowEvent(
            job_state_changed=events_pb2.JobStateChanged(
                id=job.id, job_id=job.job_id, state=convert.job_state(job.state), attempts=job.attempts, error=job.error
            )
        )

    @staticmethod
    def _workflow_event(workflow: WorkflowRow, progress: types_pb2.Progress | None = None) -> events_pb2.WorkflowEvent:
        return events_pb2.WorkflowEvent(
            workflow_state_changed=events_pb2.WorkflowStateChanged(
                state=convert.workflow_state(workflow.state),
                queue_position=workflow.queue_position,
                error=workflow.error,
                progress=progress,
            )
        )

    # ----- reads ----------------------------------------------------------------

    async def _workflow(self, session: AsyncSession, tenant: str, workflow_id: str, lock: bool = False) -> WorkflowRow:
        query = select(WorkflowRow).where(WorkflowRow.id == workflow_id, WorkflowRow.tenant_id == tenant)
        row = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"workflow {workflow_id!r} not found", field="workflow_id")
        return row

    async def _jobs_of(self, session: AsyncSession, tenant: str, workflow_ids: Sequence[str]) -> list[JobRow]:
        if not workflow_ids:
            return []
        query = select(JobRow).where(JobRow.tenant_id == tenant, JobRow.workflow_id.in_(workflow_ids))
        return list((await session.execute(query)).scalars())

    async def _positions(self, session: AsyncSession, tenant: str, jobs: Sequence[JobRow]) -> dict[str, int]:
        branches = {j.branch for j in jobs if j.state in UNFINISHED}
        if not branches:
            return {}
        query = select(JobRow).where(JobRow.tenant_id == tenant, JobRow.branch.in_(branches), JobRow.state.in_(UNFINISHED))
        return convert.lane_positions((await session.execute(query)).scalars())

    async def get_workflow(self, tenant: str, workflow_id: str) -> tuple[types_pb2.Workflow, int]:
        async with self.sessions() as session:
            row = await self._workflow(session, tenant, workflow_id)
            jobs = await self._jobs_of(session, tenant, [row.id])
            return convert.workflow_message(row, jobs, await self._positions(session, tenant, jobs)), row.event_seq

    async def list_workflows(self, tenant: str, page_size: int, page_token: str) -> tuple[list[types_pb2.Workflow], str]:
        offset = 0
        if page_token:
            if not page_token.isdigit():
                raise InvalidArgument("page_token is not one this server gave out", field="page_token")
            offset = int(page_token)
        async with self.sessions() as session:
            query = (
                select(WorkflowRow)
                .where(WorkflowRow.tenant_id == tenant)
                .order_by(WorkflowRow.created_at.desc(), WorkflowRow.id)
                .offset(offset)
                .limit(page_size + 1)
            )
            rows = list((await session.execute(query)).scalars())
            more = len(rows) > page_size
            rows = rows[:page_size]
            jobs = await self._jobs_of(session, tenant, [r.id for r in rows])
            positions = await self._positions(session, tenant, jobs)
            by_workflow: dict[str, list[JobRow]] = {}
            for job in jobs:
                by_workflow.setdefault(job.workflow_id, []).append(job)
            messages = [convert.workflow_message(r, by_workflow.get(r.id, []), positions) for r in rows]
            return messages, str(offset + page_size) if more else ""

    async def get_job(self, tenant: str, job_id: str) -> types_pb2.Job:
        async with self.sessions() as session:
            query = select(JobRow).where(JobRow.id == job_id, JobRow.tenant_id == tenant)
            row = (await session.execute(query)).scalar_one_or_none()
            if row is None:
                raise NotFound(f"job {job_id!r} not found", field="job_id")
            positions = await self._positions(session, tenant, [row])
            return convert.job_message(row, positions.get(row.id, 0))

    # ----- creation and admission ------------------------------------------------

    async def create_workflow(self, tenant: str, name: str, plan: Sequence[PlannedJob]) -> str:
        """Store a workflow QUEUED with its jobs PENDING, all or nothing."""
        now = utcnow()
        workflow_id = str(uuid.uuid4())
        async with self.sessions.begin() as session:
            counter = (await session.execute(select(LaneSeqRow).where(LaneSeqRow.id == 1).with_for_update())).scalar_one_or_none()
            if counter is None:
                counter = LaneSeqRow(id=1, value=0)
                session.add(counter)
            first_seq = counter.value + 1
            counter.value += len(plan)
            workflow = WorkflowRow(
                id=workflow_id,
                tenant_id=tenant,
                name=name,
                state="QUEUED",
                created_at=now,
                error="",
                queue_position=0,
                event_seq=0,
                progress_ratio=0.0,
                released=False,
            )
            session.add(workflow)
            await session.flush()
            for offset, job in enumerate(plan):
                session.add(
                    JobRow(
                        id=str(uuid.uuid4()),
                        lane_seq=first_seq + offset,
                        workflow_id=workflow_id,
                        tenant_id=tenant,
                        job_id=job.job_id,
                        job_type=job.job_type,
                        image_path=job.image_path,
                        branch=job.branch,
                        depends_on=job.depends_on,
                        params=job.params,
                        state="PENDING",
                        created_at=now,
                        attempts=0,
                        error="",
                        tiles_done=0,
                        tiles_total=0,
                    )
                )
            self._emit(session, workflow, self._workflow_event(workflow))
        return workflow_id

    async def set_tenant_admitted(self, tenant: str) -> int:
        """Start every QUEUED workflow of an admitted tenant."""
        now = utcnow()
        async with self.sessions.begin() as session:
            query = select(WorkflowRow).where(WorkflowRow.tenant_id == tenant, WorkflowRow.state == "QUEUED").with_for_update()
            rows = list((await session.execute(query)).scalars())
            for workflow in rows:
                workflow.state = "RUNNING"
                workflow.started_at = now
                workflow.queue_position = 0
                self._emit(session, workflow, self._workflow_event(workflow))
            return len(rows)

    async def update_queue_positions(self, positions: dict[str, int]) -> None:
        if not positions:
            return
        async with self.sessions.begin() as session:
            query = (
                select(WorkflowRow).where(WorkflowRow.state == "QUEUED", WorkflowRow.tenant_id.in_(positions)).with_for_update()
            )
            for workflow in (await session.execute(query)).scalars():
                position = positions[workflow.tenant_id]
                if workflow.queue_position != position:
                    workflow.queue_position = position
                    self._emit(session, workflow, self._workflow_event(workflow))

    async def queued_workflows(self) -> list[tuple[str, str]]:
        async with self.sessions() as session:
            query = (
                select(WorkflowRow.tenant_id, WorkflowRow.id)
                .where(WorkflowRow.state == "QUEUED")
                .order_by(WorkflowRow.created_at)
            )
            return [(t, w) for t, w in (await session.execute(query)).all()]

    async def finished_unreleased_workflows(self) -> list[tuple[str, str]]:
        async with self.sessions() as session:
            query = select(WorkflowRow.tenant_id, WorkflowRow.id).where(
                WorkflowRow.state.in_(FINAL_WORKFLOW_STATES), WorkflowRow.released.is_(False)
            )
            return [(t, w) for t, w in (await session.execute(query)).all()]

    async def mark_released(self, tenant: str, workflow_id: str) -> None:
        async with self.sessions.begin() as session:
            await session.execute(
                update(WorkflowRow).where(WorkflowRow.id == workflow_id, WorkflowRow.tenant_id == tenant).values(released=True)
            )

    # ----- the lane scheduler ------------------------------------------------------

    async def claim_runnable(self, limit: int) -> int:
        """Start up to `limit` lane heads whose dependencies succeeded; returns how many.

        A job runs only when no earlier unfinished job of its (tenant, branch) lane
        exists: strict FIFO per lane across the tenant's workflows. A retried job
        keeps its place (its lane_seq), so it stays the head while it waits.
        """
        now = utcnow()
        async with self.sessions.begin() as session:
            if self.dialect == "postgresql":
                await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK_KEY})
            earlier = aliased(JobRow)
            query = (
                select(JobRow)
                .join(WorkflowRow, WorkflowRow.id == JobRow.workflow_id)
                .where(
                    JobRow.state.in_(("PENDING", "QUEUED")),
                    WorkflowRow.state == "RUNNING",
                    (JobRow.next_attempt_at.is_(None)) | (JobRow.next_attempt_at <= now),
                    ~exists().where(
                        and_(
                            earlier.tenant_id == JobRow.tenant_id,
                            earlier.branch == JobRow.branch,
                            earlier.state.in_(UNFINISHED),
                            earlier.lane_seq < JobRow.lane_seq,
                        )
                    ),
                )
                .order_by(JobRow.lane_seq)
                .limit(limit)
            )
            heads = list((await session.execute(query)).scalars())
            if not heads:
                return 0
            deps_needed = {(j.workflow_id, d) for j in heads for d in j.depends_on}
            dep_states: dict[tuple[str, str], str] = {}
            if deps_needed:
                rows = await session.execute(
                    select(JobRow.workflow_id, JobRow.job_id, JobRow.state).where(
                        JobRow.workflow_id.in_({w for w, _ in deps_needed})
                    )
                )
                dep_states = {(w, j): s for w, j, s in rows.all()}
            runnable = [j for j in heads if all(dep_states.get((j.workflow_id, d)) == "SUCCEEDED" for d in j.depends_on)]
            waiting = [j for j in heads if j not in runnable and j.state == "PENDING"]
            workflows = await self._lock_workflows(session, {j.workflow_id for j in runnable + waiting})
            for job in waiting:
                # Head of its lane, waiting only for dependencies: QUEUED says so.
                job.state = "QUEUED"
                self._emit(session, workflows[job.workflow_id], self._job_event(job))
            for job in runnable:
                job.state = "RUNNING"
                job.attempts += 1
                job.started_at = now
                job.tiles_done = 0
                job.next_attempt_at = None
                self._emit(session, workflows[job.workflow_id], self._job_event(job))
                session.add(self._dispatch_row(job))
            metrics.JOBS_ACTIVE.inc(len(runnable))
            return len(runnable)

    async def _lock_workflows(self, session: AsyncSession, ids: set[str]) -> dict[str, WorkflowRow]:
        if not ids:
            return {}
        query = select(WorkflowRow).where(WorkflowRow.id.in_(ids)).with_for_update()
        return {w.id: w for w in (await session.execute(query)).scalars()}

    @staticmethod
    def _dispatch_row(job: JobRow) -> OutboxRow:
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
        return OutboxRow(
            subject=jetstream.dispatch_subject(job.tenant_id, job.branch),
            payload=dispatch.SerializeToString(),
            headers={},
            published=False,
        )

    # ----- job outcomes --------------------------------------------------------------

    async def _current_job(self, session: AsyncSession, tenant: str, job_id: str, attempt: int) -> JobRow | None:
        """The job if this attempt is the one running; stale or repeated reports get None."""
        query = select(JobRow).where(JobRow.id == job_id, JobRow.tenant_id == tenant).with_for_update()
        job = (await session.execute(query)).scalar_one_or_none()
        if job is None or job.state != "RUNNING" or job.attempts != attempt:
            return None
        return job

    async def record_progress(self, tenant: str, job_id: str, attempt: int, tiles_done: int, tiles_total: int) -> None:
        async with self.sessions.begin() as session:
            job = await self._current_job(session, tenant, job_id, attempt)
            if job is None or (job.tiles_done, job.tiles_total) == (tiles_done, tiles_total):
                return
            job.tiles_done = max(job.tiles_done, tiles_done)
            job.tiles_total = tiles_total
            workflow = (await self._lock_workflows(session, {job.workflow_id}))[job.workflow_id]
            siblings = await self._jobs_of(session, tenant, [workflow.id])
            progress, workflow.progress_ratio = convert.workflow_progress(siblings, workflow.progress_ratio)
            self._emit(
                session,
                workflow,
                events_pb2.WorkflowEvent(
                    job_progressed=events_pb2.JobProgressed(
                        id=job.id,
                        job_id=job.job_id,
                        job_progress=types_pb2.Progress(tiles_done=job.tiles_done, tiles_total=job.tiles_total),
                        workflow_progress=progress,
                    )
                ),
            )

    async def mark_succeeded(self, tenant: str, job_id: str, attempt: int) -> bool:
        """Returns False when the report was stale (another attempt, or already final)."""
        async with self.sessions.begin() as session:
            job = await self._current_job(session, tenant, job_id, attempt)
            if job is None:
                return False
            job.state = "SUCCEEDED"
            job.finished_at = utcnow()
            job.tiles_done = job.tiles_total
            job.error = ""
            await self._after_job_final(session, job)
            return True

    async def mark_failed(
        self, tenant: str, job_id: str, attempt: int, message: str, permanent: bool, max_attempts: int
    ) -> str | None:
        """Retry a transient failure with capped exponential backoff, else fail for good.

        Returns the job's new state, or None when the report was stale.
        """
        async with self.sessions.begin() as session:
            job = await self._current_job(session, tenant, job_id, attempt)
            if job is None:
                return None
            job.error = message
            if not permanent and job.attempts < max_attempts:
                delay = min(self.backoff_base * 2 ** (job.attempts - 1), self.backoff_cap)
                job.state = "QUEUED"
                job.next_attempt_at = utcnow() + timedelta(seconds=delay)
                metrics.JOBS_ACTIVE.dec()
                workflow = (await self._lock_workflows(session, {job.workflow_id}))[job.workflow_id]
                self._emit(session, workflow, self._job_event(job))
                return "QUEUED"
            job.state = "FAILED"
            job.finished_at = utcnow()
            await self._after_job_final(session, job)
            return "FAILED"

    async def _after_job_final(self, session: AsyncSession, job: JobRow) -> None:
        """Events, dependents of a failure, and the workflow's end when every job is final.

        A failure marks its dependents (transitively) UPSTREAM_FAILED; independent
        jobs of the workflow still run (a branch's failure does not stop the others),
        and the workflow ends FAILED once all of its jobs are final.
        """
        metrics.JOBS_ACTIVE.dec()
        metrics.JOBS_TOTAL.labels(job.job_type, job.state.lower()).inc()
        if job.started_at is not None and job.finished_at is not None:
            started = job.started_at if job.started_at.tzinfo else job.started_at.replace(tzinfo=UTC)
            metrics.JOB_LATENCY.labels(job.job_type).observe((job.finished_at - started).total_seconds())
        workflow = (await self._lock_workflows(session, {job.workflow_id}))[job.workflow_id]
        events = [self._job_event(job)]
        siblings = await self._jobs_of(session, job.tenant_id, [workflow.id])
        if job.state == "FAILED":
            failed = {job.job_id}
            changed = True
            while changed:
                changed = False
                for sibling in siblings:
                    if sibling.state in ("PENDING", "QUEUED") and failed & set(sibling.depends_on):
                        sibling.state = "UPSTREAM_FAILED"
                        sibling.finished_at = utcnow()
                        sibling.error = f"dependency {sorted(failed & set(sibling.depends_on))[0]!r} failed"
                        failed.add(sibling.job_id)
                        events.append(self._job_event(sibling))
                        changed = True
        if all(s.state in FINAL_JOB_STATES for s in siblings) and workflow.state not in FINAL_WORKFLOW_STATES:
            failures = [s for s in siblings if s.state == "FAILED"]
            workflow.state = "FAILED" if failures else "SUCCEEDED"
            workflow.error = f"job {failures[0].job_id!r} failed: {failures[0].error}" if failures else ""
            workflow.finished_at = utcnow()
            progress, workflow.progress_ratio = convert.workflow_progress(siblings, workflow.progress_ratio)
            events.append(self._workflow_event(workflow, progress))
        self._emit(session, workflow, *events)

    async def cancel_workflow(self, tenant: str, workflow_id: str) -> CancelOutcome:
        """Cancel queued and running jobs; harmless when repeated or when already finished."""
        async with self.sessions.begin() as session:
            workflow = await self._workflow(session, tenant, workflow_id, lock=True)
            if workflow.state in FINAL_WORKFLOW_STATES:
                return CancelOutcome([])
            now = utcnow()
            jobs = await self._jobs_of(session, tenant, [workflow_id])
            running = [j.id for j in jobs if j.state == "RUNNING"]
            events = []
            for job in jobs:
                if job.state in UNFINISHED:
                    if job.state == "RUNNING":
                        metrics.JOBS_ACTIVE.dec()
                    job.state = "CANCELLED"
                    job.finished_at = now
                    events.append(self._job_event(job))
            workflow.state = "CANCELLED"
            workflow.finished_at = now
            workflow.queue_position = 0
            events.append(self._workflow_event(workflow))
            self._emit(session, workflow, *events)
            return CancelOutcome(running)

    # ----- outbox --------------------------------------------------------------------

    async def fetch_unpublished(self, limit: int) -> list[OutboxRow]:
        async with self.sessions() as session:
            query = select(OutboxRow).where(OutboxRow.published.is_(False)).order_by(OutboxRow.id).limit(limit)
            return list((await session.execute(query)).scalars())

    async def mark_published(self, ids: Sequence[int]) -> None:
        async with self.sessions.begin() as session:
            # Published rows are not needed again: delete them to keep the table small.
            await session.execute(OutboxRow.__table__.delete().where(OutboxRow.id.in_(ids)))

    # ----- monitoring ------------------------------------------------------------------

    async def lane_stats(self, tenant: str) -> list[metrics_service_pb2.LaneDepth]:
        async with self.sessions() as session:
            query = (
                select(JobRow.branch, JobRow.state, func.count())
                .where(JobRow.tenant_id == tenant, JobRow.state.in_(UNFINISHED))
                .group_by(JobRow.branch, JobRow.state)
            )
            lanes: dict[str, metrics_service_pb2.LaneDepth] = {}
            for branch, state, count in (await session.execute(query)).all():
                lane = lanes.setdefault(branch, metrics_service_pb2.LaneDepth(branch=branch))
                if state == "RUNNING":
                    lane.running += count
                else:
                    lane.queued += count
            for lane in lanes.values():
                metrics.QUEUE_DEPTH.labels(tenant, lane.branch).set(lane.queued)
            return [lanes[b] for b in sorted(lanes)]

    async def recent_failures(self, tenant: str, limit: int) -> list[metrics_service_pb2.RecentFailure]:
        async with self.sessions() as session:
            query = (
                select(JobRow)
                .where(JobRow.tenant_id == tenant, JobRow.state == "FAILED")
                .order_by(JobRow.finished_at.desc())
                .limit(limit)
            )
            return [
                metrics_service_pb2.RecentFailure(
                    id=j.id,
                    job_id=j.job_id,
                    workflow_id=j.workflow_id,
                    error=j.error,
                    finished_at=convert.timestamp(j.finished_at),
                )
                for j in (await session.execute(query)).scalars()
            ]
