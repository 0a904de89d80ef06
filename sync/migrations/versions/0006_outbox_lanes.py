"""Outbox lanes: a stock push that takes a listing down to its last units goes first.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27

Jobs were claimed oldest first. On a channel whose rate limit a stream of sales outruns (Amazon,
5 patches a second), the push that took a listing to 0 waited seconds behind the pushes of
listings with plenty left, and the channel sold the unit that was gone. `outbox_jobs.lane`
(0 scarce, 1 the rest) is claimed first, then the oldest within it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add outbox_jobs.lane (every existing job in the normal lane) and its claim index."""
    with op.batch_alter_table("outbox_jobs") as batch:
        batch.add_column(sa.Column("lane", sa.Integer(), server_default="1", nullable=False))
    op.create_index(
        "ix_outbox_jobs_lane",
        "outbox_jobs",
        ["channel_id", "state", "lane", "run_after"],
        unique=False,
    )


def downgrade() -> None:
    """Drop the lane: jobs are claimed oldest first again."""
    op.drop_index("ix_outbox_jobs_lane", table_name="outbox_jobs")
    with op.batch_alter_table("outbox_jobs") as batch:
        batch.drop_column("lane")
