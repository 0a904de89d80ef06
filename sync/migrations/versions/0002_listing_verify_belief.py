"""Listings remember that what we believe the channel holds needs checking.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

A compare-and-swap channel that sold out may have sold more than it showed (some oversell and
stop at 0), so after its own sales are ingested the belief can be too low by an unknown amount
and happen to equal the ledger's figure. `verify_belief` makes the next planning round send that
figure anyway, with the belief as the expectation: the channel confirms it or the conflict
answers what it really holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add listings.verify_belief, false for every existing listing."""
    with op.batch_alter_table("listings") as batch:
        batch.add_column(
            sa.Column("verify_belief", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    """Drop listings.verify_belief."""
    with op.batch_alter_table("listings") as batch:
        batch.drop_column("verify_belief")
