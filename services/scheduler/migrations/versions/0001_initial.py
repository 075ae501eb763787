"""workflows, jobs, job dependencies, outbox, lane counter

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("queue_position", sa.Integer(), nullable=False),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.Column("progress_ratio", sa.Float(), nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_workflows_tenant_created", "workflows", ["tenant_id", "created_at"])
    op.create_index("ix_workflows_state", "workflows", ["state"])

    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("lane_seq", sa.BigInteger(), nullable=False, unique=True),
        sa.Column("workflow_id", sa.String(36), sa.ForeignKey("workflows.id"), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("job_type", sa.String(32), nullable=False),
        sa.Column("image_path", sa.Text(), nullable=False),
        sa.Column("branch", sa.String(64), nullable=False),
        sa.Column("depends_on", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("tiles_done", sa.Integer(), nullable=False),
        sa.Column("tiles_total", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("workflow_id", "job_id", name="uq_jobs_workflow_job"),
    )
    op.create_index("ix_jobs_lane", "jobs", ["tenant_id", "branch", "state", "lane_seq"])
    op.create_index("ix_jobs_state", "jobs", ["state", "lane_seq"])
    op.create_index("ix_jobs_workflow", "jobs", ["workflow_id"])

    op.create_table(
        "job_dependencies",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("depends_on_id", sa.String(36), sa.ForeignKey("jobs.id"), primary_key=True),
    )
    op.create_index("ix_job_dependencies_depends_on", "job_dependencies", ["depends_on_id"])

    op.create_table(
        "outbox",
        sa.Column("id", AUTO_ID, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("workflow_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )

    lane_seq = op.create_table(
        "lane_seq",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    # The counter's one row exists from the start, so creating workflows only ever updates it.
    op.bulk_insert(lane_seq, [{"id": 1, "value": 0}])


def downgrade() -> None:
    op.drop_table("lane_seq")
    op.drop_table("outbox")
    op.drop_table("job_dependencies")
    op.drop_table("jobs")
    op.drop_table("workflows")
