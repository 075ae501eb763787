"""The tenancy service's tables (its own MetaData)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import MetaData


class Base(DeclarativeBase):
    metadata = MetaData()


class TenantWorkflowRow(Base):
    """A workflow tenancy has heard of; unfinished ones (released_at unset) keep their tenant active or waiting.

    A released row stays as a tombstone, so a late or repeated Admit of a workflow
    that already ended cannot make its tenant active again.
    """

    __tablename__ = "tenant_workflows"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    admitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AdmissionRow(Base):
    """A tenant that is ACTIVE or WAITING; tenants with no unfinished workflow have no row."""

    __tablename__ = "admissions"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(8))
    # FIFO order of the admission queue.
    queued_seq: Mapped[int] = mapped_column(BigInteger)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_admissions_state_seq", "state", "queued_seq"),)
