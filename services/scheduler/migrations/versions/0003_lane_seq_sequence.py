"""PostgreSQL: lane_seq values from a sequence (the counter row stays SQLite's)

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Where the values handed out so far end: the counter row, or a job stored past it.
_LAST_HANDED_OUT = "GREATEST((SELECT value FROM lane_seq WHERE id = 1), (SELECT COALESCE(MAX(lane_seq), 0) FROM jobs))"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE SEQUENCE lane_seq_values AS BIGINT")
    op.execute(f"SELECT setval('lane_seq_values', {_LAST_HANDED_OUT} + 1, false)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"UPDATE lane_seq SET value = {_LAST_HANDED_OUT} WHERE id = 1")
    op.execute("DROP SEQUENCE lane_seq_values")
