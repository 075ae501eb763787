"""The scheduler's tables (its own MetaData: no other service shares them).

States are stored as their short names ("RUNNING"), the proto enums without prefix.
Every table carries tenant_id so that each query can filter on it in SQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

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

# BIGINT that SQLite still treats as its rowid alias (only INTEGER PRIMARY KEY autoincrements there).
AUTO_ID = BigInteger().with_variant(Integer, "sqlite")


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
    # Position of the tenant in tenancy's admission queue (0 once admitted).
    queue_position: Mapped[int] = mapped_column(Integer, default=0)
    # Last event sequence number written for this workflow (events are numbered 1, 2, ...).
    event_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    # Highest progress fraction reported, so the bar never goes backwards.
    progress_ratio: Mapped[float] = mapped_column(Float, default=0.0)
    # A finished workflow stays unreleased until tenancy has been told it ended.
    released: Mapped[bool] = mapped_column(Boolean, default=False)
    # W3C trace headers of the CreateWorkflow call: its jobs start later, in the dispatch
    # loop, and their messages join this trace (NULL for workflows stored before 0002).
    trace_context: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (
        Index("ix_workflows_tenant_created", "tenant_id", "created_at"),
        Index("ix_workflows_state", "state"),
    )


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Global submission order (dependencies first within a workflow): the FIFO order of every lane.
    lane_seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id"))
    tenant_id: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(String(64))
    job_type: Mapped[str] = mapped_column(String(32))
    image_path: Mapped[str] = mapped_column(Text)
    branch: Mapped[str] = mapped_column(String(64))
    # The user's job_ids, for display; scheduling reads job_dependencies.
    depends_on: Mapped[list[str]] = mapped_column(JSON, default=list)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    tiles_done: Mapped[int] = mapped_column(Integer, default=0)
    tiles_total: Mapped[int] = mapped_column(Integer, default=0)
    # A retried job is not claimed before this time (capped exponential backoff).
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("workflow_id", "job_id", name="uq_jobs_workflow_job"),
        Index("ix_jobs_lane", "tenant_id", "branch", "state", "lane_seq"),
        Index("ix_jobs_state", "state", "lane_seq"),
        Index("ix_jobs_workflow", "workflow_id"),
    )


class JobDependencyRow(Base):
    """One edge of a workflow's DAG by global ids, so the scheduler can join on it in SQL."""

    __tablename__ = "job_dependencies"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    depends_on_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)

    __table_args__ = (Index("ix_job_dependencies_depends_on", "depends_on_id"),)


class OutboxRow(Base):
    """A message written in the same transaction as the change that causes it.

    Events carry their workflow's seq; job dispatches have seq 0. A row is deleted
    once JetStream has acknowledged it (the EVENTS stream keeps events for replay),
    so every row in the table is waiting to be published.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(AUTO_ID, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    workflow_id: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    subject: Mapped[str] = mapped_column(String(256))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    # NATS headers to publish with (e.g. traceparent).
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LaneSeqRow(Base):
    """One-row counter handing out lane_seq values on SQLite.

    A counter row, not a database sequence: its row lock makes lane_seq order equal
    commit order, so a job can never appear ahead of one already claimed. PostgreSQL,
    where submissions run side by side, takes them from the sequence lane_seq_values
    under a per-tenant lock instead (WorkflowRepository._take_lane_seqs).
    """

    __tablename__ = "lane_seq"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
