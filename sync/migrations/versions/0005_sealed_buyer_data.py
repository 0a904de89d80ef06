"""Buyer data sealed at rest: orders keep their ship-to encrypted, the inbox its bodies.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Names, addresses, e-mails and phones were stored in plain text (`orders.ship_to`, and the raw
deliveries in `webhook_inbox.body`), so a copy of the store file was a copy of every buyer's
address. New values are sealed with AES-256-GCM (sync/sealing.py): `orders.ship_to_sealed`
holds the sealed ship-to and `orders.pii_key_id` the id of the key it is under;
`webhook_inbox.key_id` says the body is sealed, under which key (NULL: a plain legacy body).

`orders.ship_to` stays for legacy plaintext only: new code writes NULL there. This migration
cannot seal what is there (it has no key); the daemon at start and `channel-sync rotate-key`
seal every legacy row (sync/rekey.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add orders.ship_to_sealed, orders.pii_key_id (indexed) and webhook_inbox.key_id."""
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("ship_to_sealed", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("pii_key_id", sa.String(length=32), nullable=True))
    op.create_index(op.f("ix_orders_pii_key_id"), "orders", ["pii_key_id"], unique=False)
    with op.batch_alter_table("webhook_inbox") as batch:
        batch.add_column(sa.Column("key_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    """Drop the sealed columns (sealed values are lost: seal nothing you cannot re-fetch)."""
    with op.batch_alter_table("webhook_inbox") as batch:
        batch.drop_column("key_id")
    op.drop_index(op.f("ix_orders_pii_key_id"), table_name="orders")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("pii_key_id")
        batch.drop_column("ship_to_sealed")
