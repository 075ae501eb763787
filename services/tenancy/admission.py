"""Active-user admission: at most N tenants active, the others wait FIFO.

A tenant is active from admission until it has no unfinished workflow. Every
operation is one transaction: on PostgreSQL serialised by a transaction advisory
lock (several tenancy replicas agree), on SQLite by BEGIN IMMEDIATE. All of it is
in the DB, so a restart changes nothing; admit and release are idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common import metrics
from services.tenancy.models import AdmissionRow, TenantWorkflowRow

ADMISSION_LOCK_KEY = 727_002


class AdmissionRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], max_active: int, dialect: str = "sqlite") -> None:
        self.sessions = sessions
        self.max_active = max_active
        self.dialect = dialect

    async def _lock(self, session: AsyncSession) -> None:
        if self.dialect == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADMISSION_LOCK_KEY})

    async def _position(self, session: AsyncSession, row: AdmissionRow | None) -> tuple[bool, int]:
        if row is None:
            return False, 0
        if row.state == "ACTIVE":
            return True, 0
        ahead = await session.scalar(
            select(func.count()).where(AdmissionRow.state == "WAITING", AdmissionRow.queued_seq < row.queued_seq)
        )
        return False, int(ahead or 0) + 1

    async def admit(self, tenant: str, workflow_id: str) -> tuple[bool, int]:
        """Register an unfinished workflow; (admitted, 1-based queue position)."""
        async with self.sessions.begin() as session:
            await self._lock(session)
            insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
            await session.execute(
                insert(TenantWorkflowRow).values(tenant_id=tenant, workflow_id=workflow_id).on_conflict_do_nothing()
            )
            row = await session.get(AdmissionRow, tenant)
            if row is None:
                active = await session.scalar(select(func.count()).where(AdmissionRow.state == "ACTIVE"))
                last = await session.scalar(select(func.max(AdmissionRow.queued_seq)))
                row = AdmissionRow(
                    tenant_id=tenant,
                    state="ACTIVE" if int(active or 0) < self.max_active else "WAITING",
                    queued_seq=int(last or 0) + 1,
                    since=datetime.now(UTC),
                )
                session.add(row)
                await session.flush()
            result = await self._position(session, row)
            await self._update_gauges(session)
            return result

    async def release(self, tenant: str, workflow_id: str) -> list[str]:
        """A workflow ended; returns the tenants admitted because a slot freed (FIFO)."""
        async with self.sessions.begin() as session:
            await self._lock(session)
            await session.execute(
                delete(TenantWorkflowRow).where(
                    TenantWorkflowRow.tenant_id == tenant, TenantWorkflowRow.workflow_id == workflow_id
                )
            )
            left = await session.scalar(select(func.count()).where(TenantWorkflowRow.tenant_id == tenant))
            if not left:
                await session.execute(delete(AdmissionRow).where(AdmissionRow.tenant_id == tenant))
            active = int(await session.scalar(select(func.count()).where(AdmissionRow.state == "ACTIVE")) or 0)
            admitted: list[str] = []
            if active < self.max_active:
                waiting = await session.execute(
                    select(AdmissionRow)
                    .where(AdmissionRow.state == "WAITING")
                    .order_by(AdmissionRow.queued_seq)
                    .limit(self.max_active - active)
                )
                for row in waiting.scalars():
                    row.state = "ACTIVE"
                    row.since = datetime.now(UTC)
                    admitted.append(row.tenant_id)
            await session.flush()
            await self._update_gauges(session)
            return admitted

    async def get(self, tenant: str) -> tuple[bool, int]:
        async with self.sessions() as session:
            return await self._position(session, await session.get(AdmissionRow, tenant))

    async def summary(self) -> tuple[list[str], list[str]]:
        """(active tenants, waiting tenants in queue order)."""
        async with self.sessions() as session:
            rows = (await session.execute(select(AdmissionRow).order_by(AdmissionRow.queued_seq))).scalars().all()
            return [r.tenant_id for r in rows if r.state == "ACTIVE"], [r.tenant_id for r in rows if r.state == "WAITING"]

    async def _update_gauges(self, session: AsyncSession) -> None:
        counts = dict((await session.execute(select(AdmissionRow.state, func.count()).group_by(AdmissionRow.state))).all())
        metrics.ACTIVE_USERS.set(counts.get("ACTIVE", 0))
        metrics.ADMISSION_QUEUE.set(counts.get("WAITING", 0))
