"""A push to a listing's last units may overtake a slow push of the same listing.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28

One push per listing was in flight at a time, so the older figure could never land last. An
Amazon feed takes minutes to be processed (seconds in the sandbox): a listing in it that sold out
meanwhile kept showing stock until the feed was done, and its buyers were oversold.
`outbox_jobs.overtakable` marks the jobs of such a slow push: a sold-out or scarce push of the
same listing is claimed beside it, and when the slow one lands, the listing's newest figure is
pushed again, in case the channel applied the older one last.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add outbox_jobs.overtakable, false for every existing job."""
    with op.batch_alter_table("outbox_jobs") as batch:
        batch.add_column(
            sa.Column("overtakable", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    """Drop outbox_jobs.overtakable: one push per listing in flight again."""
    with op.batch_alter_table("outbox_jobs") as batch:
        batch.drop_column("overtakable")
