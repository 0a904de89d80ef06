"""Order lines keep what was shipped or cancelled here, so a channel's update cannot undo it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

`shipped_floor`: units in the parcels this store recorded for the line (ours and those the
channel reported), plus what the channel said was shipped when ours was recorded.
`cancelled_floor`: units cancelled by a decision here. Ingest takes the larger of each floor and
the channel's own figure, until the channel shows what was decided here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add order_lines.shipped_floor and cancelled_floor, 0 for every existing line."""
    with op.batch_alter_table("order_lines") as batch:
        batch.add_column(
            sa.Column("shipped_floor", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("cancelled_floor", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    """Drop the two floors."""
    with op.batch_alter_table("order_lines") as batch:
        batch.drop_column("cancelled_floor")
        batch.drop_column("shipped_floor")
