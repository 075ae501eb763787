"""Active-user admission: at most N tenants active, the others wait FIFO.

A tenant is active from admission until it has no unfinished workflow. A tenant
with no free slot waits (1-based queue position); an active tenant's new workflows
are admitted at once. Whenever a slot is free, the longest-waiting tenants take it,
also after a restart with a larger limit.

Every operation is one transaction: on PostgreSQL serialised by a transaction
advisory lock (the limit is a property of all rows together, so several tenancy
replicas take one lock rather than row locks), on SQLite by BEGIN IMMEDIATE. All
of it is in the DB, so a restart changes nothing; admit and release are
idempotent, and a released workflow stays released (a late Admit of it is ignored).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, bindparam, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common import metrics
from services.tenancy.models import AdmissionRow, TenantWorkflowRow

ADMISSION_LOCK_KEY = 727_002

# Core statements, built once (an admission is a handful of them; as ORM statements built
# per call they cost about twice as much).
ADMISSIONS: Table = AdmissionRow.__table__  # type: ignore[assignment]
WORKFLOWS: Table = TenantWorkflowRow.__table__  # type: ignore[assignment]
_TENANT, _WORKFLOW, _NOW = bindparam("tenant"), bindparam("workflow"), bindparam("now")
_ADMISSION_OF = select(ADMISSIONS.c.state).where(ADMISSIONS.c.tenant_id == _TENANT)
_UNFINISHED = select(func.count()).where(WORKFLOWS.c.tenant_id == _TENANT, WORKFLOWS.c.released_at.is_(None))
_ENQUEUE = ADMISSIONS.insert().from_select(
    ["tenant_id", "state", "queued_seq", "since"],
    select(_TENANT, text("'WAITING'"), func.coalesce(func.max(ADMISSIONS.c.queued_seq), 0) + 1, _NOW),
)
_RELEASE = (
    WORKFLOWS.update()
    .where(WORKFLOWS.c.tenant_id == _TENANT, WORKFLOWS.c.workflow_id == _WORKFLOW, WORKFLOWS.c.released_at.is_(None))
    .values(released_at=_NOW)
)
_FORGET = ADMISSIONS.delete().where(ADMISSIONS.c.tenant_id == _TENANT)
_ACTIVE = select(func.count()).where(ADMISSIONS.c.state == "ACTIVE")
_WAITING_FIRST = select(ADMISSIONS.c.tenant_id).where(ADMISSIONS.c.state == "WAITING").order_by(ADMISSIONS.c.queued_seq)
_ahead = ADMISSIONS.alias("ahead")
_POSITION = select(
    ADMISSIONS.c.state,
    select(func.count())
    .where(_ahead.c.state == "WAITING", _ahead.c.queued_seq < ADMISSIONS.c.queued_seq)
    .scalar_subquery()
    .label("ahead"),
).where(ADMISSIONS.c.tenant_id == _TENANT)
_COUNTS = select(ADMISSIONS.c.state, func.count()).group_by(ADMISSIONS.c.state)


class AdmissionRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], max_active: int, dialect: str = "sqlite") -> None:
        self.sessions = sessions
        self.max_active = max_active
        self.dialect = dialect
        # INSERT of a workflow row that does nothing when tenancy has heard of it already.
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self._insert_workflow = insert(WORKFLOWS).on_conflict_do_nothing(index_elements=["tenant_id", "workflow_id"])

    async def admit(self, tenant: str, workflow_id: str) -> tuple[bool, int]:
        """Register an unfinished workflow; returns (admitted, 1-based queue position or 0)."""
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            await self._lock(session)
            new = await session.execute(
                self._insert_workflow,
                {"tenant_id": tenant, "workflow_id": workflow_id, "admitted_at": now, "released_at": None},
            )
            state = await session.scalar(_ADMISSION_OF, {"tenant": tenant})
            if state == "ACTIVE":
                # Already active: the new workflow joins at once and no count changes,
                # so there are no slots to fill and no gauges to refresh.
                return True, 0
            # Unfinished work (this workflow, unless it had ended before this late Admit) queues.
            if state is None and (new.rowcount or await self._unfinished(session, tenant)):
                await session.execute(_ENQUEUE, {"tenant": tenant, "now": now})
            await self._fill_free_slots(session, now)
            result = await self._position(session, tenant)
            await self._update_gauges(session)
            return result

    async def release(self, tenant: str, workflow_id: str) -> list[str]:
        """A workflow ended; returns the tenants admitted because a slot freed, in FIFO order."""
        now = datetime.now(UTC)
        params = {"tenant": tenant, "workflow": workflow_id, "now": now}
        async with self.sessions.begin() as session:
            await self._lock(session)
            if not (await session.execute(_RELEASE, params)).rowcount:
                # Released already, or ended before tenancy heard of it: then the tombstone
                # keeps a late Admit out.
                tombstone = {"tenant_id": tenant, "workflow_id": workflow_id, "admitted_at": now, "released_at": now}
                await session.execute(self._insert_workflow, tombstone)
            if not await self._unfinished(session, tenant):
                await session.execute(_FORGET, {"tenant": tenant})
            admitted = await self._fill_free_slots(session, now)
            await self._update_gauges(session)
            return admitted

    async def get(self, tenant: str) -> tuple[bool, int]:
        """(admitted, queue position); (False, 0) for a tenant with no unfinished workflow."""
        async with self.sessions() as session:
            return await self._position(session, tenant)

    async def summary(self) -> tuple[list[str], list[str]]:
        """(active tenants, waiting tenants in queue order)."""
        async with self.sessions() as session:
            rows = (await session.execute(select(AdmissionRow).order_by(AdmissionRow.queued_seq))).scalars().all()
            return [r.tenant_id for r in rows if r.state == "ACTIVE"], [r.tenant_id for r in rows if r.state == "WAITING"]

    async def _lock(self, session: AsyncSession) -> None:
        if self.dialect == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADMISSION_LOCK_KEY})

    async def _unfinished(self, session: AsyncSession, tenant: str) -> int:
        return int(await session.scalar(_UNFINISHED, {"tenant": tenant}) or 0)

    async def _fill_free_slots(self, session: AsyncSession, now: datetime) -> list[str]:
        """Admit the longest-waiting tenants while fewer than max_active are active."""
        free = self.max_active - int(await session.scalar(_ACTIVE) or 0)
        if free <= 0:
            return []
        admitted = list((await session.execute(_WAITING_FIRST.limit(free))).scalars())
        if admitted:
            await session.execute(
                ADMISSIONS.update().where(ADMISSIONS.c.tenant_id.in_(admitted)).values(state="ACTIVE", since=now)
            )
        return admitted

    async def _position(self, session: AsyncSession, tenant: str) -> tuple[bool, int]:
        row: Any = (await session.execute(_POSITION, {"tenant": tenant})).first()
        if row is None:
            return False, 0
        if row.state == "ACTIVE":
            return True, 0
        return False, int(row.ahead or 0) + 1

    async def _update_gauges(self, session: AsyncSession) -> None:
        counts = dict((await session.execute(_COUNTS)).tuples().all())
        metrics.ACTIVE_USERS.set(counts.get("ACTIVE", 0))
        metrics.ADMISSION_QUEUE.set(counts.get("WAITING", 0))
