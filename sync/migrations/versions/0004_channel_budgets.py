"""Channel budgets: a channel's daily use (eBay calls per API, revisions per listing) kept here.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

The counts were held in each process's memory: a restart gave the day's budget back and two
instances spent it twice. Each instance now adds what it used to one row per (channel, budget,
day) and takes back the totals (sync/budgets.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sync.types import UTCDateTime

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create channel_budgets."""
    op.create_table(
        "channel_budgets",
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("daily_limit", sa.Integer(), nullable=False),
        sa.Column("is_exhausted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("resets_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_channel_budgets_channel_id_channels")
        ),
        sa.PrimaryKeyConstraint(
            "channel_id", "scope", "key", "day", name=op.f("pk_channel_budgets")
        ),
    )
    op.create_index("ix_channel_budgets_resets_at", "channel_budgets", ["resets_at"])


def downgrade() -> None:
    """Drop channel_budgets."""
    op.drop_index("ix_channel_budgets_resets_at", table_name="channel_budgets")
    op.drop_table("channel_budgets")
