"""The scheduler's tables (its own MetaData: no other service shares them)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import MetaData


class Base(DeclarativeBase):
    metadata = MetaData()


class WorkflowRow(Base):
    __tablename__ = "workflows"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str] = mapped_column(Text, default="")
    queue_position: Mapped[int] = mapped_column(Integer, default=0)
    # Last event sequence number written for this workflow (events are numbered 1, 2, ...).
    event_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    # Highest progress fraction reported, so the bar never goes backwards.
    progress_ratio: Mapped[float] = mapped_column(Float, default=0.0)
    # A finished workflow stays unreleased until tenancy has been told it ended.
    released: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_workflows_tenant_created", "tenant_id", "created_at"),
        Index("ix_workflows_state", "state"),
    )


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Global submission order: the FIFO order of every lane.
    lane_seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id"))
    tenant_id: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(String(64))
    job_type: Mapped[str] = mapped_column(String(32))
    image_path: Mapped[str] = mapped_column(Text)
    branch: Mapped[str] = mapped_column(String(64))
    depends_on: Mapped[list[str]] = mapped_column(JSON, default=list)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    tiles_done: Mapped[int] = mapped_column(Integer, default=0)
    tiles_total: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("workflow_id", "job_id", name="uq_jobs_workflow_job"),
        Index("ix_jobs_lane", "tenant_id", "branch", "state", "lane_seq"),
        Index("ix_jobs_state", "state", "lane_seq"),
        Index("ix_jobs_workflow", "workflow_id"),
    )


class OutboxRow(Base):
    """Messages written in the same transaction as the change that causes them."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(256))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict] = mapped_column(JSON, default=dict)
    published: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_outbox_unpublished", "published", "id"),)


class LaneSeqRow(Base):
    """One-row counter handing out lane_seq values (portable across SQLite and PostgreSQL)."""

    __tablename__ = "lane_seq"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
