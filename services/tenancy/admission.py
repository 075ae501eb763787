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

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common import metrics
from services.tenancy.models import AdmissionRow, TenantWorkflowRow

ADMISSION_LOCK_KEY = 727_002


class AdmissionRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], max_active: int, dialect: str = "sqlite") -> None:
        self.sessions = sessions
        self.max_active = max_active
        self.dialect = dialect

    async def admit(self, tenant: str, workflow_id: str) -> tuple[bool, int]:
        """Register an unfinished workflow; returns (admitted, 1-based queue position or 0)."""
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            await self._lock(session)
            if await session.get(TenantWorkflowRow, (tenant, workflow_id)) is None:
                session.add(TenantWorkflowRow(tenant_id=tenant, workflow_id=workflow_id, admitted_at=now, released_at=None))
            row = await session.get(AdmissionRow, tenant)
            if row is not None and row.state == "ACTIVE":
                # Already active: the new workflow joins at once and no count changes,
                # so there are no slots to fill and no gauges to refresh.
                return True, 0
            if row is None and await self._unfinished(session, tenant):
                last = await session.scalar(select(func.max(AdmissionRow.queued_seq)))
                row = AdmissionRow(tenant_id=tenant, state="WAITING", queued_seq=int(last or 0) + 1, since=now)
                session.add(row)
            await self._fill_free_slots(session, now)
            result = await self._position(session, row)
            await self._update_gauges(session)
            return result

    async def release(self, tenant: str, workflow_id: str) -> list[str]:
        """A workflow ended; returns the tenants admitted because a slot freed, in FIFO order."""
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            await self._lock(session)
            workflow = await session.get(TenantWorkflowRow, (tenant, workflow_id))
            if workflow is None:
                # Ended before tenancy heard of it: the tombstone keeps a late Admit out.
                session.add(TenantWorkflowRow(tenant_id=tenant, workflow_id=workflow_id, admitted_at=now, released_at=now))
            elif workflow.released_at is None:
                workflow.released_at = now
            await session.flush()
            if not await self._unfinished(session, tenant):
                await session.execute(delete(AdmissionRow).where(AdmissionRow.tenant_id == tenant))
            admitted = await self._fill_free_slots(session, now)
            await self._update_gauges(session)
            return admitted

    async def get(self, tenant: str) -> tuple[bool, int]:
        """(admitted, queue position); (False, 0) for a tenant with no unfinished workflow."""
        async with self.sessions() as session:
            return await self._position(session, await session.get(AdmissionRow, tenant))

    async def summary(self) -> tuple[list[str], list[str]]:
        """(active tenants, waiting tenants in queue order)."""
        async with self.sessions() as session:
            rows = (await session.execute(select(AdmissionRow).order_by(AdmissionRow.queued_seq))).scalars().all()
            return [r.tenant_id for r in rows if r.state == "ACTIVE"], [r.tenant_id for r in rows if r.state == "WAITING"]

    async def _lock(self, session: AsyncSession) -> None:
        if self.dialect == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADMISSION_LOCK_KEY})

    async def _unfinished(self, session: AsyncSession, tenant: str) -> int:
        query = select(func.count()).where(TenantWorkflowRow.tenant_id == tenant, TenantWorkflowRow.released_at.is_(None))
        return int(await session.scalar(query) or 0)

    async def _fill_free_slots(self, session: AsyncSession, now: datetime) -> list[str]:
        """Admit the longest-waiting tenants while fewer than max_active are active."""
        await session.flush()
        active = int(await session.scalar(select(func.count()).where(AdmissionRow.state == "ACTIVE")) or 0)
        if active >= self.max_active:
            return []
        waiting = await session.execute(
            select(AdmissionRow)
            .where(AdmissionRow.state == "WAITING")
            .order_by(AdmissionRow.queued_seq)
            .limit(self.max_active - active)
        )
        admitted = []
        for row in waiting.scalars():
            row.state = "ACTIVE"
            row.since = now
            admitted.append(row.tenant_id)
        await session.flush()
        return admitted

    async def _position(self, session: AsyncSession, row: AdmissionRow | None) -> tuple[bool, int]:
        if row is None:
            return False, 0
        if row.state == "ACTIVE":
            return True, 0
        ahead = await session.scalar(
            select(func.count()).where(AdmissionRow.state == "WAITING", AdmissionRow.queued_seq < row.queued_seq)
        )
        return False, int(ahead or 0) + 1

    async def _update_gauges(self, session: AsyncSession) -> None:
        query = select(AdmissionRow.state, func.count()).group_by(AdmissionRow.state)
        counts = dict((await session.execute(query)).tuples().all())
        metrics.ACTIVE_USERS.set(counts.get("ACTIVE", 0))
        metrics.ADMISSION_QUEUE.set(counts.get("WAITING", 0))
