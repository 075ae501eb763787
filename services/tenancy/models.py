"""The tenancy service's tables (its own MetaData)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import MetaData


class Base(DeclarativeBase):
    metadata = MetaData()


class TenantWorkflowRow(Base):
    """An unfinished workflow that keeps its tenant active (or waiting)."""

    __tablename__ = "tenant_workflows"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(36), primary_key=True)


class AdmissionRow(Base):
    """A tenant that is ACTIVE or WAITING; tenants with no unfinished work have no row."""

    __tablename__ = "admissions"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(8))
    # FIFO order of the admission queue.
    queued_seq: Mapped[int] = mapped_column(BigInteger)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
