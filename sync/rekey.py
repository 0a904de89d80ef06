"""Every sealed value under the current key: legacy plain rows sealed, old keys' values re-sealed.

`channel-sync rotate-key` runs `rotate`; the daemon runs `seal_legacy` at start, so a store older
than migration 0005 ends fully sealed without anyone asking. Both walk the orders and the inbox
by id, one short transaction per chunk, so they are safe to stop and rerun, and safe beside a
running daemon: on PostgreSQL an order is re-sealed under ingest's own per-order lock
(`lock_orders`, as the erasure takes it) and re-read after it, an inbox row under its row lock,
and each value is written only if it still is what was read (compare-and-set on its key id). A
value under a key the keyring does not hold is left alone and reported by key id, never opened.

On SQLite the transactions that seal legacy rows set `secure_delete`, so the freed pages that
held the plain text are zeroed rather than left in the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, func, select, text, update
from sqlalchemy.orm import Session, raiseload

from sync.db import Database
from sync.models import Order, WebhookDelivery
from sync.reservations import lock_orders
from sync.sealing import (
    Keyring,
    SealingError,
    inbox_context,
    open_json,
    seal_json,
    ship_to_context,
)

__all__ = ["CHUNK", "RekeyReport", "remaining_by_key", "rotate", "seal_legacy"]

CHUNK = 500
"""Values per transaction: short locks beside a busy ingest."""


@dataclass
class RekeyReport:
    """What a pass did, and what is left under keys other than the current one."""

    current_key_id: str
    resealed_orders: int = 0
    resealed_inbox: int = 0
    sealed_legacy_orders: int = 0
    sealed_legacy_inbox: int = 0
    unopenable: int = 0  # under a known key but failed its integrity check
    remaining: dict[str, int] = field(default_factory=dict)  # key id -> values still under it

    def unknown_keys(self, keyring: Keyring) -> dict[str, int]:
        """Of `remaining`, the values under keys this keyring does not hold."""
        return {k: n for k, n in self.remaining.items() if k not in keyring.key_ids}


def seal_legacy(db: Database, keyring: Keyring, *, chunk: int = CHUNK) -> RekeyReport:
    """Seal every plain ship-to and inbox body left by a store older than migration 0005."""
    report = RekeyReport(keyring.current_id)
    _walk(db, Order.ship_to.is_not(None), chunk, _legacy_orders(keyring, report))
    _walk_inbox(db, WebhookDelivery.key_id.is_(None), chunk, _legacy_inbox(keyring, report))
    return report


def rotate(db: Database, keyring: Keyring, *, chunk: int = CHUNK) -> RekeyReport:
    """Seal legacy rows, re-seal every value under an older key the keyring holds under the
    current one, and count what remains under each other key."""
    report = seal_legacy(db, keyring, chunk=chunk)
    older = sorted(keyring.key_ids - {keyring.current_id})
    if older:
        _walk(db, Order.pii_key_id.in_(older), chunk, _reseal_orders(keyring, report, older))
        _walk_inbox(
            db, WebhookDelivery.key_id.in_(older), chunk, _reseal_inbox(keyring, report, older)
        )
    report.remaining = remaining_by_key(db, keyring.current_id)
    return report


def remaining_by_key(db: Database, current_key_id: str) -> dict[str, int]:
    """Values (orders and inbox bodies) sealed under each key other than `current_key_id`."""
    counts: dict[str, int] = {}
    with db.read_session() as session:
        for column in (Order.pii_key_id, WebhookDelivery.key_id):
            query = (
                select(column, func.count())
                .where(column.is_not(None), column != current_key_id)
                .group_by(column)
            )
            for found, count in session.execute(query):
                counts[str(found)] = counts.get(str(found), 0) + int(count)
    return counts


# Walking the tables -----------------------------------------------------------------------------

_Chunk = Callable[[Session, list[Any]], None]


def _walk(db: Database, condition: ColumnElement[bool], chunk: int, apply: _Chunk) -> None:
    """Orders matching `condition`, by id, `chunk` per transaction: locked, re-read, applied."""
    after = 0
    while True:

        def one(session: Session, after: int = after) -> int | None:
            keys = session.execute(
                select(Order.id, Order.channel_id, Order.external_id)
                .where(condition, Order.id > after)
                .order_by(Order.id)
                .limit(chunk)
            ).all()
            if not keys:
                return None
            # Ingest's lock first (sorted), then the rows as they are now.
            lock_orders(session, ((c, e) for _, c, e in keys))
            rows = session.execute(
                select(Order)
                .where(Order.id.in_([i for i, _, _ in keys]), condition)
                .order_by(Order.id)
                .options(raiseload(Order.lines))
                .with_for_update()
            ).scalars()
            apply(session, list(rows))
            return int(keys[-1][0])

        last = db.transact(one)
        if last is None:
            return
        after = last


def _walk_inbox(db: Database, condition: ColumnElement[bool], chunk: int, apply: _Chunk) -> None:
    """Inbox rows matching `condition`, by id, `chunk` per transaction, locked as read."""
    after = 0
    while True:

        def one(session: Session, after: int = after) -> int | None:
            rows = list(
                session.execute(
                    select(WebhookDelivery)
                    .where(condition, WebhookDelivery.id > after)
                    .order_by(WebhookDelivery.id)
                    .limit(chunk)
                    .with_for_update()
                ).scalars()
            )
            if not rows:
                return None
            apply(session, rows)
            return rows[-1].id

        last = db.transact(one)
        if last is None:
            return
        after = last


def _secure_delete(session: Session) -> None:
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("PRAGMA secure_delete = ON"))


# What each pass does to one chunk ---------------------------------------------------------------


def _legacy_orders(keyring: Keyring, report: RekeyReport) -> _Chunk:
    def apply(session: Session, rows: list[Any]) -> None:
        _secure_delete(session)
        for row in rows:
            assert isinstance(row, Order)
            values: dict[str, Any] = {"ship_to": None}
            # An erased order keeps nothing; a sealed value written since wins over the plain one.
            plain = row.ship_to
            if isinstance(plain, dict) and row.pii_erased_at is None and row.ship_to_sealed is None:
                context = ship_to_context(row.channel_id, row.external_id)
                values["ship_to_sealed"] = seal_json(keyring, plain, context)
                values["pii_key_id"] = keyring.current_id
                report.sealed_legacy_orders += 1
            _update_order(session, row, values)

    return apply


def _legacy_inbox(keyring: Keyring, report: RekeyReport) -> _Chunk:
    def apply(session: Session, rows: list[Any]) -> None:
        _secure_delete(session)
        for row in rows:
            assert isinstance(row, WebhookDelivery)
            context = inbox_context(row.channel_id, row.delivery_id)
            row.body, row.key_id = keyring.seal(row.body, context), keyring.current_id
            report.sealed_legacy_inbox += 1
        session.flush()

    return apply


def _reseal_orders(keyring: Keyring, report: RekeyReport, older: list[str]) -> _Chunk:
    def apply(session: Session, rows: list[Any]) -> None:
        for row in rows:
            assert isinstance(row, Order)
            if row.ship_to_sealed is None or row.pii_key_id not in older:
                continue
            context = ship_to_context(row.channel_id, row.external_id)
            try:
                plain = open_json(keyring, row.ship_to_sealed, context)
            except SealingError:
                report.unopenable += 1
                continue
            values = {
                "ship_to_sealed": seal_json(keyring, plain, context),
                "pii_key_id": keyring.current_id,
            }
            report.resealed_orders += _update_order(session, row, values)

    return apply


def _reseal_inbox(keyring: Keyring, report: RekeyReport, older: list[str]) -> _Chunk:
    def apply(session: Session, rows: list[Any]) -> None:
        for row in rows:
            assert isinstance(row, WebhookDelivery)
            context = inbox_context(row.channel_id, row.delivery_id)
            try:
                plain = keyring.open(row.body, context)
            except SealingError:
                report.unopenable += 1
                continue
            row.body, row.key_id = keyring.seal(plain, context), keyring.current_id
            report.resealed_inbox += 1
        session.flush()

    return apply


def _update_order(session: Session, row: Order, values: dict[str, Any]) -> int:
    """Write `values` if the row's sealed value is still under the key it was read under."""
    same_key = (
        Order.pii_key_id.is_(None) if row.pii_key_id is None else Order.pii_key_id == row.pii_key_id
    )
    result = session.execute(
        update(Order)
        .where(Order.id == row.id, same_key)
        # updated_at kept: re-sealing is no change of the order, and retention counts from it.
        .values(**values, updated_at=row.updated_at)
        .execution_options(synchronize_session=False)
    )
    count = getattr(result, "rowcount", 0)
    return int(count) if isinstance(count, int) else 0
