"""Workflows and jobs in the DB: every tenant-facing query is filtered by tenant in SQL.

Another tenant's ids are simply not found (NotFound, never PermissionDenied).
State changes and the messages they cause (events, job dispatches) are written in
one transaction (a transactional outbox), so a crash can delay a message but never
lose it. All state lives in the DB: after a restart nothing needs recovering. Jobs
that were RUNNING stay RUNNING; the workers' status messages (JetStream, acked only
once applied) keep arriving and finish them, and a worker's death shows up as a
transient failure that is retried.

Concurrency (several scheduler replicas). On PostgreSQL every transaction that
changes a job's state first locks its workflows' rows (SELECT ... FOR UPDATE, in id
order), so the workflow row is the lock of its jobs and of its event numbering;
claims are also serialised by a transaction advisory lock, so two replicas never
run two jobs of one lane at once. On SQLite every transaction begins IMMEDIATE (services.
common.db), which makes it the single writer.

Job outcomes (retries, failures, workflow ends) are in services.scheduler.outcomes;
the lane rule is in services.scheduler.lanes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Protocol

from sqlalchemy import Table, bindparam, func, literal_column, null, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.selectable import TableValuedAlias

from services.common import db, metrics, tracing
from services.common.api.slidelane.v1 import events_pb2, metrics_service_pb2, types_pb2
from services.common.errors import InvalidArgument, NotFound
from services.scheduler import convert, events, lanes, outcomes
from services.scheduler.coalesce import Coalescer
from services.scheduler.convert import FINAL_WORKFLOW_STATES, UNFINISHED
from services.scheduler.models import JobDependencyRow, JobRow, LaneSeqRow, OutboxRow, WorkflowRow
from services.scheduler.outcomes import (
    JobOutcome,
    JobReport,
    RetryPolicy,
    WorkflowEnded,
    lock_workflows,
    workflow_progress,
)
from services.scheduler.validation import PlannedJob
from services.scheduler.write_queue import WriteQueue

log = logging.getLogger(__name__)
CLAIM_LOCK_KEY = 727_001  # pg_advisory_xact_lock key serialising claims across replicas
_CLAIM_LOCK = text("SELECT pg_advisory_xact_lock(:key)")  # built once: text() parses its SQL
# First key of the two-key advisory locks (their own key space, apart from CLAIM_LOCK_KEY's)
# that serialise one tenant's CreateWorkflow transactions; the second is submit_lock_key's.
SUBMIT_LOCK_SPACE = 727_003
_SUBMIT_LOCK = text("SELECT pg_advisory_xact_lock(:space, :key)")
_NEXT_LANE_SEQS = text("SELECT nextval('lane_seq_values') FROM generate_series(1, :count)")
MAX_PAGE_SIZE = 500
# Admissions per transaction at most: a longer one holds up the status batches behind the
# claim lock. PostgreSQL, 30 submissions at once, dispatch p99: unbounded (21 tenants went
# in one) 41-64 ms, 4 at most 45-54 ms, 2 at most 29-41 ms; one at a time 30-37 ms, but the
# last lane started 1.4-1.6 s after the first submit instead of 0.8-0.9 s.
ADMIT_TOGETHER = 2
# PostgreSQL: the jobs tables are analysed once this many jobs were created since the last
# time, or this share of the table if more (see WorkflowRepository._note_created).
ANALYZE_AFTER_JOBS = 1000
ANALYZE_AFTER_SHARE = 0.2
_ANALYZE_JOBS = text("ANALYZE jobs, job_dependencies")
_JOBS_ESTIMATE = text("SELECT reltuples::bigint FROM pg_class WHERE oid = 'jobs'::regclass")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CancelOutcome:
    # Global ids of the jobs that were RUNNING: their tile work must be stopped.
    running_job_ids: list[str]
    # Set only by the call that actually cancelled (None when already final).
    workflow_ended: WorkflowEnded | None = None


@dataclass(frozen=True)
class ClaimedJob:
    """A job the claim just started; its JobDispatch is already in the outbox."""

    tenant_id: str
    workflow_id: str
    id: str
    job_id: str
    job_type: str
    branch: str
    image_path: str
    attempt: int


@dataclass
class _Started:
    """In-memory copy of the job columns a claim reads and changes (plain rows, not ORM
    objects: the claim runs once per status batch and ORM loading was a large part of it)."""

    id: str
    workflow_id: str
    tenant_id: str
    job_id: str
    job_type: str
    branch: str
    image_path: str
    params: dict[str, Any] | None
    attempts: int
    error: str
    tiles_total: int
    state: str = "QUEUED"
    tiles_done: int = 0


_STARTED_NAMES = tuple(f.name for f in fields(_Started) if f.name not in ("state", "tiles_done"))
_STARTED_COLUMNS = [outcomes.JOBS.c[name] for name in _STARTED_NAMES]
# The claim's statements, built once (see services.scheduler.lanes).
_REREAD_QUEUED = select(*_STARTED_COLUMNS).where(
    db.in_values(outcomes.JOBS.c.id, outcomes.JOB_IDS), outcomes.JOBS.c.state == "QUEUED"
)
_START_JOBS = (
    outcomes.JOBS.update()
    .where(outcomes.JOBS.c.id == bindparam("id_"))
    .values(
        state="RUNNING", attempts=bindparam("attempts_"), started_at=bindparam("started_at_"), tiles_done=0, next_attempt_at=None
    )
)


class OutboxMessage(Protocol):
    """What the outbox loop publishes: an OutboxRow read from the table, or a row's columns as
    its INSERT returned them."""

    id: int
    workflow_id: str
    seq: int
    subject: str
    payload: bytes
    headers: dict[str, str] | None


_TAKE_LANE_SEQS = (
    LaneSeqRow.__table__.update()
    .where(LaneSeqRow.__table__.c.id == 1)
    .values(value=LaneSeqRow.__table__.c.value + bindparam("count"))
    .returning(LaneSeqRow.__table__.c.value)
)
_INSERT_EDGES = JobDependencyRow.__table__.insert()
_ADMIT_WORKFLOWS = (
    outcomes.WORKFLOWS.update()
    .where(outcomes.WORKFLOWS.c.id == bindparam("id_"))
    .values(state="RUNNING", queue_position=0, started_at=bindparam("started_at_"), event_seq=bindparam("event_seq_"))
)
# GetWorkflow's and GetJob's rows: Core statements built once (plain rows with the mapped
# classes' attributes), not ORM queries built and loaded per call (a third of GetWorkflow).
_WORKFLOW_OF_TENANT = select(outcomes.WORKFLOWS).where(
    outcomes.WORKFLOWS.c.id == bindparam("workflow"), outcomes.WORKFLOWS.c.tenant_id == bindparam(lanes.TENANT)
)
_JOB_OF_TENANT = select(outcomes.JOBS).where(
    outcomes.JOBS.c.id == bindparam("job"), outcomes.JOBS.c.tenant_id == bindparam(lanes.TENANT)
)
_QUEUED_WORKFLOWS = (
    select(outcomes.WORKFLOWS.c.tenant_id, outcomes.WORKFLOWS.c.id)
    .where(outcomes.WORKFLOWS.c.state == "QUEUED")
    .order_by(outcomes.WORKFLOWS.c.created_at)
)
_FINISHED_UNRELEASED = select(outcomes.WORKFLOWS.c.tenant_id, outcomes.WORKFLOWS.c.id).where(
    outcomes.WORKFLOWS.c.state.in_(FINAL_WORKFLOW_STATES), outcomes.WORKFLOWS.c.released.is_(False)
)
_MARK_RELEASED = (
    outcomes.WORKFLOWS.update()
    .where(outcomes.WORKFLOWS.c.id == bindparam("workflow"), outcomes.WORKFLOWS.c.tenant_id == bindparam("tenant"))
    .values(released=True)
)
_WRITTEN = "slidelane_outbox_written"  # session.info key: outbox rows this transaction wrote
_OUTBOX_WRITTEN = [outcomes.OUTBOX.c[name] for name in ("id", "workflow_id", "seq", "subject", "payload", "headers")]
_INSERT_OUTBOX_RETURNING = outcomes.INSERT_OUTBOX.returning(*_OUTBOX_WRITTEN)


# PostgreSQL: the rows as one array per column, unnested, so the statement's text (and its
# prepared plan) is one whatever the row count, as services.common.db.in_values.
def _column_arrays(table: Table, names: Sequence[str], prefix: str = "") -> TableValuedAlias:
    """unnest() of one array parameter per column (named prefix + column), as rows with the
    columns' names: rows of any count sent as one statement with one text."""
    arrays = (bindparam(prefix + name, type_=postgresql.ARRAY(table.c[name].type)) for name in names)
    return func.unnest(*arrays).table_valued(*names).render_derived()


_OUTBOX_NAMES = ("tenant_id", "workflow_id", "seq", "subject", "payload", "headers", "created_at")
# Prefixed: parameters named as a table's columns would become SET columns of _CLAIM_WRITES' UPDATEs.
_OUTBOX_ARRAYS = _column_arrays(outcomes.OUTBOX, _OUTBOX_NAMES, "outbox_")
_DELETE_OUTBOX = outcomes.OUTBOX.delete().where(db.in_values(outcomes.OUTBOX.c.id, "ids"))
# PostgreSQL: the published rows deleted by the INSERT's own statement (a round trip fewer;
# an empty list deletes nothing).
_INSERT_OUTBOX_ARRAYS_DELETING_RETURNING = (
    outcomes.OUTBOX.insert()
    .from_select(list(_OUTBOX_NAMES), select(*_OUTBOX_ARRAYS.c))
    .returning(*_OUTBOX_WRITTEN)
    .add_cte(_DELETE_OUTBOX.cte("published"))
)
_DELETING = "slidelane_outbox_deleting"  # session.info key: published rows this transaction deletes
# PostgreSQL: everything a claim writes in one statement: the jobs it started, the workflows
# it changed, its outbox rows (and the published rows deleted). Empty arrays change nothing,
# so the text is one whatever was claimed. Three round trips and a statement per job and per
# workflow fewer than executemany's.
_STARTED_ARRAYS = _column_arrays(outcomes.JOBS, ("id", "attempts", "started_at"), "started_")
_SAVED_NAMES = ("id", *outcomes.SAVED_WORKFLOW_COLUMNS)
_SAVED_ARRAYS = _column_arrays(outcomes.WORKFLOWS, _SAVED_NAMES, "saved_")
_START_JOBS_FROM_ARRAYS = (
    outcomes.JOBS.update()
    .where(outcomes.JOBS.c.id == _STARTED_ARRAYS.c.id)
    .values(
        # Constants as SQL literals: a DML CTE's own bound values are not sent with the statement.
        state=literal_column("'RUNNING'"),
        attempts=_STARTED_ARRAYS.c.attempts,
        started_at=_STARTED_ARRAYS.c.started_at,
        tiles_done=literal_column("0"),
        next_attempt_at=null(),
    )
)
_SAVE_WORKFLOWS_FROM_ARRAYS = (
    outcomes.WORKFLOWS.update()
    .where(outcomes.WORKFLOWS.c.id == _SAVED_ARRAYS.c.id)
    .values({name: _SAVED_ARRAYS.c[name] for name in outcomes.SAVED_WORKFLOW_COLUMNS})
)
_CLAIM_WRITES = _INSERT_OUTBOX_ARRAYS_DELETING_RETURNING.add_cte(_START_JOBS_FROM_ARRAYS.cte("started")).add_cte(
    _SAVE_WORKFLOWS_FROM_ARRAYS.cte("saved")
)


def submit_lock_key(tenant: str) -> int:
    """The tenant's key in SUBMIT_LOCK_SPACE: a signed 32-bit hash (tenants that share one
    only wait for each other)."""
    return int.from_bytes(hashlib.blake2b(tenant.encode(), digest_size=4).digest(), "big", signed=True)


class WorkflowRepository:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        dialect: str = "sqlite",
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
        read_sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self.sessions = sessions
        # For the read-only methods (db.session_factory(engine, read_only=True)).
        self.read_sessions = read_sessions or sessions
        # SQLite has one writer: queueing this process's writers here hands the lock
        # over at once, where SQLite's busy handler would sleep and retry (1, 2, 5, ... ms),
        # and lets transactions that start work pass waiting workflow inserts.
        self._writer: WriteQueue | None = WriteQueue() if dialect == "sqlite" else None
        self.dialect = dialect
        # The outbox, handed over in memory: rows this process committed, for the outbox loop
        # to publish without reading them back, and the ids it published, deleted by the next
        # write transaction (or delete_published) instead of one transaction each.
        self._written: list[OutboxMessage] = []
        self._published: list[int] = []
        self.on_written: Callable[[], None] | None = None
        # Called when a claim took as many lane heads as it was allowed: more may be runnable.
        self.on_claim_full: Callable[[], None] | None = None
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.clock = clock
        self._created_since_analyze = 0
        self._jobs_at_analyze = 0
        self._analyzing: asyncio.Task[None] | None = None
        self._admit_tenants_together = Coalescer(self._admit_tenants, max_keys=ADMIT_TOGETHER)

    # ----- locks and reads ------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _transaction(self, deferrable: bool = False) -> AsyncIterator[AsyncSession]:
        """A write transaction, committed on exit. It also deletes the outbox rows published
        since the last one; the outbox rows it writes go to the outbox loop after the commit.
        `deferrable`: on SQLite, waits while transactions that start work are queued."""
        deleting, self._published = self._published, []
        written: list[OutboxMessage] = []
        try:
            writer = self._writer.turn(deferrable) if self._writer else contextlib.nullcontext()
            async with writer, self.sessions.begin() as session:
                session.info[_WRITTEN] = written
                session.info[_DELETING] = deleting
                yield session
                if session.info.get(_DELETING):  # no outbox insert took them along (SQLite: none does)
                    await session.execute(_DELETE_OUTBOX, {"ids": session.info.pop(_DELETING)})
        except BaseException:
            self._published = deleting + self._published  # rolled back: still to delete
            raise
        if written:
            self._written += written
            if self.on_written is not None:
                self.on_written()

    async def _insert_outbox(self, session: AsyncSession, values: list[dict[str, Any]]) -> None:
        """Insert outbox rows (one multi-row INSERT, one event row per workflow); what it
        returns goes to the outbox loop after the commit."""
        if values:
            rows = events.merge_event_rows(values)
            if self.dialect == "postgresql":
                await self._write_outbox_postgresql(session, _INSERT_OUTBOX_ARRAYS_DELETING_RETURNING, rows, {})
            else:
                _wrote(session, await session.execute(_INSERT_OUTBOX_RETURNING, rows))

    async def _write_outbox_postgresql(
        self, session: AsyncSession, statement: Any, rows: list[dict[str, Any]], params: dict[str, Any]
    ) -> None:
        """Run a statement that inserts outbox rows from arrays and deletes the published ones
        (_INSERT_OUTBOX_ARRAYS_DELETING_RETURNING, alone or with more CTEs)."""
        deleting = session.info.pop(_DELETING, None) or []
        _wrote(session, await session.execute(statement, {**params, **_outbox_columns(rows), "ids": deleting}))

    async def _write_claim(
        self,
        session: AsyncSession,
        started: Sequence[_Started],
        now: datetime,
        workflows: Sequence[outcomes.LockedWorkflow],
        outbox: list[dict[str, Any]],
    ) -> None:
        """A claim's writes: the started jobs, the changed workflows, the outbox rows."""
        if self.dialect != "postgresql":
            if started:
                values = [{"id_": j.id, "attempts_": j.attempts, "started_at_": now} for j in started]
                await session.execute(_START_JOBS, values)
            await outcomes.save_workflows(session, workflows)
            await self._insert_outbox(session, outbox)
            return
        rows = events.merge_event_rows(outbox) if outbox else []
        if not (started or workflows or rows or session.info.get(_DELETING)):
            return
        params: dict[str, Any] = {"started_id": [j.id for j in started], "started_attempts": [j.attempts for j in started]}
        params["started_started_at"] = [now] * len(started)
        saved = [outcomes.saved_workflow_values(w) for w in workflows]
        params |= {f"saved_{name}": [values[name] for values in saved] for name in _SAVED_NAMES}
        await self._write_outbox_postgresql(session, _CLAIM_WRITES, rows, params)

    async def _locked_workflow(self, session: AsyncSession, tenant: str, workflow_id: str) -> WorkflowRow:
        rows = await lock_workflows(session, (WorkflowRow.id == workflow_id) & (WorkflowRow.tenant_id == tenant))
        if not rows:
            raise NotFound(f"workflow {workflow_id!r} not found", field="workflow_id")
        return rows[0]

    async def _positions(self, session: AsyncSession, tenant: str, workflow_ids: Sequence[str]) -> dict[str, int]:
        if not workflow_ids:
            return {}
        params = {lanes.TENANT: tenant, lanes.WORKFLOW_IDS: list(workflow_ids)}
        return dict((await session.execute(lanes.lane_positions(), params)).tuples().all())

    async def _jobs_of(self, session: AsyncSession, tenant: str, workflow_ids: Sequence[str]) -> list[Any]:
        """The jobs' rows (plain rows with JobRow's attributes: read-only use)."""
        if not workflow_ids:
            return []
        params = {lanes.TENANT: tenant, lanes.WORKFLOW_IDS: list(workflow_ids)}
        return list(await session.execute(lanes.jobs_of_workflows(), params))

    async def get_workflow(self, tenant: str, workflow_id: str) -> tuple[types_pb2.Workflow, int]:
        """The workflow with its jobs, and the seq of its last event (a watch resumes after it)."""
        async with self.read_sessions() as session:
            row = (await session.execute(_WORKFLOW_OF_TENANT, {"workflow": workflow_id, lanes.TENANT: tenant})).first()
            if row is None:
                raise NotFound(f"workflow {workflow_id!r} not found", field="workflow_id")
            # Jobs read after the workflow row: they are at least as new as event_seq, so a
            # watch that resumes after it may see a change twice but never misses one.
            jobs = await self._jobs_of(session, tenant, [row.id])
            return convert.workflow_message(row, jobs, await self._positions(session, tenant, [row.id])), row.event_seq

    async def list_workflows(self, tenant: str, page_size: int, page_token: str) -> tuple[list[types_pb2.Workflow], str]:
        """Newest first. The token is the last row's (created_at, id): pages do not shift as workflows arrive."""
        page_size = min(max(page_size, 1), MAX_PAGE_SIZE)
        query = select(WorkflowRow).where(WorkflowRow.tenant_id == tenant)
        if page_token:
            created_at, last_id = _decode_page_token(page_token)
            query = query.where(
                (WorkflowRow.created_at < created_at) | ((WorkflowRow.created_at == created_at) & (WorkflowRow.id < last_id))
            )
        query = query.order_by(WorkflowRow.created_at.desc(), WorkflowRow.id.desc()).limit(page_size + 1)
        async with self.read_sessions() as session:
            rows = list((await session.execute(query)).scalars())
            more = len(rows) > page_size
            rows = rows[:page_size]
            ids = [r.id for r in rows]
            jobs = await self._jobs_of(session, tenant, ids)
            positions = await self._positions(session, tenant, ids)
        by_workflow: dict[str, list[Any]] = {}
        for job in jobs:
            by_workflow.setdefault(job.workflow_id, []).append(job)
        messages = [convert.workflow_message(r, by_workflow.get(r.id, []), positions) for r in rows]
        return messages, _encode_page_token(rows[-1]) if more else ""

    async def get_job(self, tenant: str, job_id: str) -> types_pb2.Job:
        """A job by its global id."""
        async with self.read_sessions() as session:
            row = (await session.execute(_JOB_OF_TENANT, {"job": job_id, lanes.TENANT: tenant})).first()
            if row is None:
                raise NotFound(f"job {job_id!r} not found", field="job_id")
            positions = await self._positions(session, tenant, [row.workflow_id])
            return convert.job_message(row, positions.get(row.id, 0))

    # ----- creation and admission --------------------------------------------------

    async def create_workflow(
        self, tenant: str, name: str, plan: Sequence[PlannedJob], *, admitted: bool = False, queue_position: int = 0
    ) -> str:
        """Store a validated plan, all or nothing; returns the workflow id.

        Not admitted: the workflow is QUEUED (at queue_position) and its jobs PENDING.
        Admitted: RUNNING at once, jobs without dependencies QUEUED for their lanes.
        """
        now = self.clock()
        workflow_id = str(uuid.uuid4())
        ids = {job.job_id: str(uuid.uuid4()) for job in plan}
        # Deferrable: in a burst of submissions, the workflows admitted meanwhile start first.
        async with self._transaction(deferrable=True) as session:
            lane_seqs = await self._take_lane_seqs(session, tenant, len(plan))
            workflow = outcomes.LockedWorkflow(
                id=workflow_id,
                tenant_id=tenant,
                state="RUNNING" if admitted else "QUEUED",
                queue_position=0 if admitted else queue_position,
                error="",
                event_seq=0,
                progress_ratio=0.0,
                finished_at=None,
                trace_context=tracing.inject(),
            )
            jobs = [
                {
                    "id": ids[job.job_id],
                    "lane_seq": lane_seqs[offset],
                    "workflow_id": workflow_id,
                    "tenant_id": tenant,
                    "job_id": job.job_id,
                    "job_type": job.job_type,
                    "image_path": job.image_path,
                    "branch": job.branch,
                    "depends_on": list(job.depends_on),
                    "params": dict(job.params),
                    "state": "QUEUED" if admitted and not job.depends_on else "PENDING",
                    "created_at": now,
                    "attempts": 0,
                    "error": "",
                    "tiles_done": 0,
                    "tiles_total": 0,
                }
                for offset, job in enumerate(plan)
            ]
            created = [events.workflow_state_changed(workflow)]
            created += [events.job_state_changed(SimpleNamespace(**job)) for job in jobs if job["state"] == "QUEUED"]
            outbox = events.outbox_event_values(workflow, created, now)  # numbers them: event_seq first
            row = {f.name: getattr(workflow, f.name) for f in fields(workflow) if f.name not in ("events", "progressed")}
            row |= {"name": name, "created_at": now, "started_at": now if admitted else None, "released": False}
            # Core INSERTs, in dependency order: the workflow, its jobs, the edges.
            await session.execute(outcomes.WORKFLOWS.insert(), row)
            await session.execute(outcomes.JOBS.insert(), jobs)
            edges = [{"job_id": ids[job.job_id], "depends_on_id": ids[dep]} for job in plan for dep in job.depends_on]
            if edges:
                await session.execute(_INSERT_EDGES, edges)
            await self._insert_outbox(session, outbox)
        self._note_created(len(plan))
        return workflow_id

    async def _take_lane_seqs(self, session: AsyncSession, tenant: str, count: int) -> list[int]:
        """`count` new lane_seq values, ascending, in commit order among the tenant's
        submissions (across replicas), so a job never lands ahead of a lane-mate already
        claimed. Lanes are the tenant's own: other tenants' submissions need no order.

        PostgreSQL: the tenant's advisory lock, held to commit, then a sequence. (With one
        counter row for everyone, each CreateWorkflow of a burst of 30 waited 0.5 s on average
        for the others' commits.) SQLite: the counter row; its one writer serialises anyway.
        """
        if self.dialect == "postgresql":
            await session.execute(_SUBMIT_LOCK, {"space": SUBMIT_LOCK_SPACE, "key": submit_lock_key(tenant)})
            return sorted((await session.execute(_NEXT_LANE_SEQS, {"count": count})).scalars())
        last = (await session.execute(_TAKE_LANE_SEQS, {"count": count})).scalar_one()
        return list(range(last - count + 1, last + 1))

    def _note_created(self, jobs: int) -> None:
        """On PostgreSQL, refresh the planner's statistics of the jobs tables after a burst of
        new jobs. Autovacuum analyses a table up to a minute after it changed; until then the
        planner takes the new jobs for a handful, and the statement that queues a finished
        job's dependents scanned every PENDING job (through index entries of rows long moved
        on) instead of looking the dependents up: half of the backend's time per report."""
        if self.dialect != "postgresql":
            return
        self._created_since_analyze += jobs
        due = max(ANALYZE_AFTER_JOBS, ANALYZE_AFTER_SHARE * self._jobs_at_analyze)
        if self._created_since_analyze >= due and (self._analyzing is None or self._analyzing.done()):
            self._created_since_analyze = 0
            self._analyzing = asyncio.create_task(self._analyze())

    async def _analyze(self) -> None:
        try:
            async with self.sessions.begin() as session:
                await session.execute(_ANALYZE_JOBS)
                self._jobs_at_analyze = int(await session.scalar(_JOBS_ESTIMATE) or 0)
        except Exception:  # autovacuum will get to it
            log.warning("analysing the jobs tables failed", exc_info=True)

    async def set_tenant_admitted(self, tenant: str, claim_limit: int = 0) -> list[str]:
        """Start every QUEUED workflow of an admitted tenant; returns their ids.

        With `claim_limit`, the same transaction then claims up to that many runnable lane
        heads (claim_runnable's work): a new workflow's first jobs start without waiting for
        the dispatch loop's next transaction, which queues behind every other writer's.
        Calls made while another's transaction runs are applied together by the next one
        (services.scheduler.coalesce): a burst of submissions takes a few transactions."""
        return await self._admit_tenants_together((tenant, claim_limit))

    async def _admit_tenants(self, calls: list[tuple[str, int]]) -> dict[tuple[str, int], list[str]]:
        """set_tenant_admitted for several (tenant, claim_limit) calls in one transaction,
        claiming up to the largest of their limits."""
        tenants = sorted({tenant for tenant, _ in calls})
        claim_limit = max(limit for _, limit in calls)
        now = self.clock()
        async with self._transaction() as session:
            if claim_limit:
                await self._claim_lock(session)  # first, as every claim takes its locks
            workflows = await outcomes.lock_queued_workflows(session, tenants)
            if not workflows:
                return {call: [] for call in calls}
            for workflow in workflows.values():
                workflow.state = "RUNNING"
                workflow.queue_position = 0
                workflow.events.append(events.workflow_state_changed(workflow))
            # The workflows are RUNNING (in this transaction) before their jobs are QUEUED.
            await outcomes.queue_jobs(
                session, workflows, lanes.queue_ready_jobs(), {lanes.TENANTS: tenants, lanes.WORKFLOW_IDS: list(workflows)}
            )
            outbox = [v for w in workflows.values() for v in events.outbox_event_values(w, w.events, now)]
            if claim_limit:
                # Its events are numbered (in `outbox`): the claim inserts them ahead of its own
                # and numbers what it adds after them; the UPDATE below writes the last number.
                for workflow in workflows.values():
                    workflow.events.clear()
                await self._claim(session, claim_limit, outbox, workflows)
                outbox = []
            admitted = [{"id_": w.id, "started_at_": now, "event_seq_": w.event_seq} for w in workflows.values()]
            await session.execute(_ADMIT_WORKFLOWS, admitted)
            await self._insert_outbox(session, outbox)
        started: dict[str, list[str]] = {}
        for workflow in workflows.values():
            started.setdefault(workflow.tenant_id, []).append(workflow.id)
        return {call: started.get(call[0], []) for call in calls}

    async def update_queue_positions(self, positions: dict[str, int]) -> None:
        """tenant -> its admission queue position, shown on its QUEUED workflows."""
        if not positions:
            return
        now = self.clock()
        async with self._transaction() as session:
            queued = (WorkflowRow.state == "QUEUED") & WorkflowRow.tenant_id.in_(positions)
            outbox: list[dict[str, Any]] = []
            for workflow in await lock_workflows(session, queued):
                position = positions[workflow.tenant_id]
                if workflow.queue_position != position:
                    workflow.queue_position = position
                    outbox += events.outbox_event_values(workflow, [events.workflow_state_changed(workflow)], now)
            await self._insert_outbox(session, outbox)

    async def queued_workflows(self) -> list[tuple[str, str]]:
        """(tenant, workflow id) of every workflow waiting for admission, oldest first."""
        async with self.read_sessions() as session:
            return list((await session.execute(_QUEUED_WORKFLOWS)).tuples())

    async def finished_unreleased_workflows(self) -> list[tuple[str, str]]:
        """(tenant, workflow id) of ended workflows tenancy has not been told about."""
        async with self.read_sessions() as session:
            return list((await session.execute(_FINISHED_UNRELEASED)).tuples())

    async def mark_released(self, tenant: str, workflow_id: str) -> None:
        await self.mark_all_released([(tenant, workflow_id)])

    async def mark_all_released(self, workflows: Sequence[tuple[str, str]]) -> None:
        """Tenancy has been told that these (tenant, workflow id) ended."""
        if workflows:
            async with self._transaction() as session:
                await session.execute(_MARK_RELEASED, [{"tenant": t, "workflow": w} for t, w in workflows])

    # ----- the lane scheduler --------------------------------------------------------

    async def claim_runnable(self, limit: int) -> list[ClaimedJob]:
        """Start up to `limit` runnable lane heads (see services.scheduler.lanes), atomically.

        Each started job gets attempts+1 and started_at, a JobStateChanged event and
        a JobDispatch in the outbox, in the same transaction. Set-based: one query
        finds the heads, one locks their workflows, one re-reads the jobs under lock.
        """
        async with self._transaction() as session:
            await self._claim_lock(session)
            return await self._claim(session, limit)

    async def _claim_lock(self, session: AsyncSession) -> None:
        """Serialise claims across scheduler replicas (PostgreSQL; SQLite has one writer)."""
        if self.dialect == "postgresql":
            await session.execute(_CLAIM_LOCK, {"key": CLAIM_LOCK_KEY})

    async def _claim(
        self,
        session: AsyncSession,
        limit: int,
        outbox: list[dict[str, Any]] | None = None,
        locked: dict[str, outcomes.LockedWorkflow] | None = None,
        first_events: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
    ) -> list[ClaimedJob]:
        """The claim itself; the caller's transaction holds the claim lock (_claim_lock).

        `outbox`: rows the caller's transaction still has to write; they go into the
        same INSERT as the claim's own, ahead of them (one statement fewer per batch).
        `first_events`: more such rows, made once the heads are found (finish_reports'
        progress counts, off the path from a job's end to its dependent's start) and before
        the claim numbers its own events.
        `locked`: workflows the caller's transaction has locked and changed but not
        written yet (apply_job_reports'): not locked again, and written once, here.
        """
        workflows = dict(locked or {})
        now = self.clock()
        heads = await session.execute(lanes.runnable_heads(limit, _STARTED_NAMES), {lanes.NOW: now})
        jobs = [_Started(**row._mapping) for row in heads]
        if len(jobs) >= limit and self.on_claim_full is not None:
            self.on_claim_full()
        if jobs:
            if missing := sorted({j.workflow_id for j in jobs} - workflows.keys()):
                workflows |= await outcomes.lock_workflow_copies(session, missing)
                if self.dialect == "postgresql":
                    # Re-read under the workflow locks just taken: a job cancelled meanwhile is no
                    # longer QUEUED. Jobs of workflows locked before the heads query are as it read
                    # them (every change to a job holds its workflow's lock); SQLite's transaction
                    # holds the one write lock since BEGIN: nothing changed.
                    newly_locked = set(missing)
                    reread_ids = [j.id for j in jobs if j.workflow_id in newly_locked]
                    reread = await session.execute(_REREAD_QUEUED, {outcomes.JOB_IDS: reread_ids})
                    still_queued = {row.id: _Started(**row._mapping) for row in reread}
                    jobs = [
                        still_queued[j.id] if j.workflow_id in newly_locked else j
                        for j in jobs
                        if j.workflow_id not in newly_locked or j.id in still_queued
                    ]
            # Stamped after the locked re-read, so a job never starts "before" the end of the
            # lane-mate whose commit made it the head (that end was stamped before its commit).
            now = max(now, self.clock())
        outbox = [*(outbox or []), *(await first_events() if first_events is not None else [])]
        changed = {w.id for w in workflows.values() if w.events}
        if jobs:
            started: dict[str, list[events_pb2.WorkflowEvent]] = {}
            for job in jobs:
                job.state = "RUNNING"
                job.attempts += 1
                started.setdefault(job.workflow_id, []).append(events.job_state_changed(job))
                dispatched = tracing.record_step(
                    f"dispatch {job.job_type}",
                    workflows[job.workflow_id].trace_context,
                    {"slidelane.tenant": job.tenant_id, "slidelane.job_id": job.id, "slidelane.attempt": job.attempts},
                )
                outbox.append(events.outbox_dispatch_values(job, now, dispatched))
            for workflow_id, workflow_events in started.items():
                outbox += events.outbox_event_values(workflows[workflow_id], workflow_events, now)
            changed |= started.keys()
        await self._write_claim(session, jobs, now, [workflows[w] for w in sorted(changed)], outbox)
        return [
            ClaimedJob(j.tenant_id, j.workflow_id, j.id, j.job_id, j.job_type, j.branch, j.image_path, j.attempts) for j in jobs
        ]

    # ----- job outcomes ------------------------------------------------------------------

    async def apply_reports(self, reports: Sequence[JobReport], max_attempts: int) -> list[JobOutcome]:
        """Apply a batch of status reports in one transaction; one outcome per report.

        The fast path for the status consumer: the transaction's fixed cost is paid
        once per batch. If it raises, nothing of the batch was applied, and the
        reports can be retried one by one.
        """
        policy = RetryPolicy(max_attempts, self.backoff_base, self.backoff_cap)
        async with self._transaction() as session:
            outbox: list[dict[str, Any]] = []
            applied = await outcomes.apply_reports(session, reports, policy, self.clock(), outbox=outbox)
            await self._insert_outbox(session, outbox)
            return applied

    async def apply_reports_and_claim(
        self, reports: Sequence[JobReport], max_attempts: int, claim_limit: int
    ) -> tuple[list[JobOutcome], list[ClaimedJob]]:
        """apply_reports, then claim_runnable for the lane heads the reports freed, in one
        transaction with no wait in between. On PostgreSQL it takes the claim's advisory
        lock first, so its locks come in the order every claim takes them (advisory, then
        workflows) and two replicas cannot deadlock; on SQLite it is the single writer."""
        policy = RetryPolicy(max_attempts, self.backoff_base, self.backoff_cap)
        async with self._transaction() as session:
            await self._claim_lock(session)
            applied = await outcomes.apply_job_reports(session, reports, policy, self.clock())
            # The batch's progress counts wait until the claim has found the heads it freed:
            # a round trip fewer between a job's end and its dependent's start.
            claimed = await self._claim(
                session, claim_limit, locked=applied.workflows, first_events=lambda: outcomes.finish_reports(session, applied)
            )
            return applied.outcomes, claimed

    async def record_progress(self, tenant: str, job_id: str, attempt: int, tiles_done: int, tiles_total: int) -> JobOutcome:
        """Tile counts of the running attempt (tiles_done never goes down); other attempts are ignored."""
        report = JobReport(tenant, job_id, attempt, "progress", tiles_done=tiles_done, tiles_total=tiles_total)
        return (await self.apply_reports([report], max_attempts=1))[0]

    async def mark_succeeded(self, tenant: str, job_id: str, attempt: int) -> JobOutcome:
        """The attempt finished; dependents whose dependencies all succeeded become QUEUED."""
        return (await self.apply_reports([JobReport(tenant, job_id, attempt, "succeeded")], max_attempts=1))[0]

    async def mark_failed(
        self, tenant: str, job_id: str, attempt: int, message: str, permanent: bool, max_attempts: int
    ) -> JobOutcome:
        """Retry a transient failure with capped exponential backoff (see RetryPolicy), else fail for good."""
        report = JobReport(tenant, job_id, attempt, "failed", message=message, permanent=permanent)
        return (await self.apply_reports([report], max_attempts))[0]

    async def cancel_workflow(self, tenant: str, workflow_id: str) -> CancelOutcome:
        """Cancel queued and running jobs; harmless when repeated or when already finished."""
        now = self.clock()
        async with self._transaction() as session:
            workflow = await self._locked_workflow(session, tenant, workflow_id)
            if workflow.state in FINAL_WORKFLOW_STATES:
                return CancelOutcome([])
            query = (
                select(JobRow).where(JobRow.workflow_id == workflow_id, JobRow.state.in_(UNFINISHED)).order_by(JobRow.lane_seq)
            )
            jobs = list((await session.execute(query)).scalars())
            running = [j.id for j in jobs if j.state == "RUNNING"]
            for job in jobs:
                job.state = "CANCELLED"
                job.finished_at = now
            workflow.state = "CANCELLED"
            workflow.finished_at = now
            workflow.queue_position = 0
            await session.flush()
            changed = [events.job_state_changed(j) for j in jobs]
            changed.append(events.workflow_state_changed(workflow, await workflow_progress(session, workflow)))
            await self._insert_outbox(session, events.outbox_event_values(workflow, changed, now))
            return CancelOutcome(running, WorkflowEnded(tenant, workflow_id, "CANCELLED"))

    # ----- outbox ------------------------------------------------------------------------

    def take_written(self) -> list[OutboxMessage]:
        """The outbox rows this process committed since the last call, oldest first."""
        written, self._written = self._written, []
        return written

    async def fetch_unpublished(self, limit: int) -> list[OutboxRow]:
        """The oldest messages not yet published, in the order they were written (read from
        the DB: rows of other replicas, of a crashed run, or not yet taken from memory)."""
        await self.delete_published()
        async with self.read_sessions() as session:
            query = select(OutboxRow).order_by(OutboxRow.id).limit(limit)
            return list((await session.execute(query)).scalars())

    def mark_published(self, ids: Sequence[int]) -> None:
        """JetStream acknowledged these: a published row is never needed again. It is deleted
        by the next write transaction, or by delete_published."""
        self._published += ids

    async def delete_published(self) -> None:
        if self._published:
            async with self._transaction():
                pass  # the transaction deletes them

    # ----- monitoring ----------------------------------------------------------------------

    async def lane_stats(self, tenant: str) -> list[metrics_service_pb2.LaneDepth]:
        """Waiting (PENDING or QUEUED) and running jobs per branch of the tenant."""
        async with self.read_sessions() as session:
            query = (
                select(JobRow.branch, JobRow.state, func.count())
                .where(JobRow.tenant_id == tenant, JobRow.state.in_(UNFINISHED))
                .group_by(JobRow.branch, JobRow.state)
            )
            lanes_by_branch: dict[str, metrics_service_pb2.LaneDepth] = {}
            for branch, state, count in (await session.execute(query)).tuples():
                lane = lanes_by_branch.setdefault(branch, metrics_service_pb2.LaneDepth(branch=branch))
                if state == "RUNNING":
                    lane.running += count
                else:
                    lane.queued += count
            return [lanes_by_branch[b] for b in sorted(lanes_by_branch)]

    async def all_lane_depths(self) -> dict[tuple[str, str], int]:
        """Waiting jobs per (tenant, branch) lane, for the queue-depth gauge.

        Also sets workflow_jobs_active from the DB: counted there it stays right
        across restarts and replicas, which incrementing in one process would not.
        """
        async with self.read_sessions() as session:
            query = (
                select(JobRow.tenant_id, JobRow.branch, func.count())
                .where(JobRow.state.in_(lanes.WAITING))
                .group_by(JobRow.tenant_id, JobRow.branch)
            )
            depths = {(t, b): n for t, b, n in (await session.execute(query)).tuples()}
            running = await session.scalar(select(func.count()).where(JobRow.state == "RUNNING"))
        metrics.JOBS_ACTIVE.set(running or 0)
        return depths

    async def recent_failures(self, tenant: str, limit: int) -> list[metrics_service_pb2.RecentFailure]:
        """The tenant's latest jobs that FAILED (not UPSTREAM_FAILED: those name their cause)."""
        async with self.read_sessions() as session:
            query = (
                select(JobRow)
                .where(JobRow.tenant_id == tenant, JobRow.state == "FAILED")
                .order_by(JobRow.finished_at.desc(), JobRow.lane_seq.desc())
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


def _wrote(session: AsyncSession, written: Any) -> None:
    """The outbox rows an INSERT ... RETURNING wrote, for the outbox loop after the commit."""
    session.info[_WRITTEN].extend(sorted(written, key=lambda row: row.id))


def _outbox_columns(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Outbox rows as the array parameters of _OUTBOX_ARRAYS (PostgreSQL)."""
    return {f"outbox_{name}": [row[name] for row in rows] for name in _OUTBOX_NAMES}


def _encode_page_token(row: WorkflowRow) -> str:
    raw = json.dumps([row.created_at.isoformat(), row.id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        created_at, last_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return datetime.fromisoformat(created_at), str(last_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidArgument("page_token is not one this server gave out", field="page_token") from None
