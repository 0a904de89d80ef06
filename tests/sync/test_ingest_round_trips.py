"""What a webhook's ingest sends PostgreSQL: few statements, each one a round trip.

A webhook is one order per transaction, so on PostgreSQL its cost is mostly round trips
(`bench/ingest.py` measures it against a bare insert). These keep the count from growing back
unnoticed, and the one statement that writes everything small enough for psycopg to parse once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH, MAX_CACHED_STATEMENT_PARAMS
from sqlalchemy import event, func, select

from connectors.base import Order, OrderLine, OrderStatus
from sync.db import Database
from sync.ingest import ChannelRef, ingest_orders
from sync.ledger_sql import ingest_write_statement
from sync.models import BundleComponent, Channel, Listing, Reservation, Sku, StockLevel
from sync.models import Order as OrderRow

AT = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def store(pg_database: Database) -> tuple[Database, ChannelRef]:
    """A mug, a plate and a bundle of both, listed on the channel the orders come from."""
    with pg_database.session() as session:
        channel = Channel(name="shop", kind="memory")
        session.add(channel)
        session.add_all([Sku(sku="MUG"), Sku(sku="PLATE"), Sku(sku="SET", is_bundle=True)])
        session.flush()
        session.add_all(
            [
                BundleComponent(bundle_sku="SET", component_sku="MUG", quantity=2),
                BundleComponent(bundle_sku="SET", component_sku="PLATE", quantity=1),
                StockLevel(sku="MUG", location="default", on_hand=5),
                StockLevel(sku="PLATE", location="default", on_hand=5),
            ]
        )
        session.add_all(
            Listing(channel_id=channel.id, sku=sku, external_ref=sku, last_pushed_quantity=5)
            for sku in ("MUG", "PLATE", "SET")
        )
        channel_id = channel.id
    return pg_database, ChannelRef(channel_id, "shop")


@pytest.fixture
def statements(pg_database: Database) -> Iterator[list[str]]:
    """Every statement the store is sent while the test runs."""
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(pg_database.engine, "before_cursor_execute", count)
    yield sent
    event.remove(pg_database.engine, "before_cursor_execute", count)


def _order(at: datetime = AT) -> Order:
    return Order(
        external_id="1001",
        status=OrderStatus.OPEN,
        currency="EUR",
        updated_at=at,
        lines=[
            OrderLine(external_line_id="1", sku="SET", quantity=1),
            OrderLine(external_line_id="2", sku="PLATE", quantity=2),
            OrderLine(external_line_id="3", sku="NOT-OURS", quantity=1),
        ],
    )


def test_a_new_order_takes_four_statements(
    store: tuple[Database, ChannelRef], statements: list[str]
) -> None:
    db, channel = store
    result = db.transact(lambda session: ingest_orders(session, channel, [_order()]))

    # The order locks, the look-up that locks its SKUs, the ledger read, the write.
    assert len(statements) == 4, "\n".join(s[:80] for s in statements)
    assert result.created == ["1001"]
    assert result.unmapped_lines == 1
    with db.read_session() as session:
        reserved = {
            sku: units
            for sku, units in session.execute(
                select(Reservation.sku, func.sum(Reservation.reserved)).group_by(Reservation.sku)
            )
        }
        listings = {
            row.sku: (row.is_dirty, row.last_pushed_quantity, row.verify_belief)
            for row in session.scalars(select(Listing))
        }
    assert reserved == {"MUG": 2, "PLATE": 3}
    # The channel sold one SET and two PLATEs itself: its count went down by as much.
    assert listings == {"SET": (True, 4, True), "PLATE": (True, 3, True), "MUG": (True, 5, False)}


def test_a_repeated_order_stops_after_the_look_up(
    store: tuple[Database, ChannelRef], statements: list[str]
) -> None:
    db, channel = store
    db.transact(lambda session: ingest_orders(session, channel, [_order()]))
    statements.clear()

    result = db.transact(lambda session: ingest_orders(session, channel, [_order()]))

    assert len(statements) == 2
    assert result.skipped == ["1001"]
    with db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(OrderRow)) == 1


def test_the_write_statement_is_parsed_once_by_psycopg(pg_database: Database) -> None:
    # psycopg caches the conversion of a query text only up to these sizes; past them every
    # webhook pays for parsing the statement again.
    compiled = ingest_write_statement().compile(pg_database.engine)
    assert len(str(compiled).encode()) <= MAX_CACHED_STATEMENT_LENGTH
    assert len(compiled.params) <= MAX_CACHED_STATEMENT_PARAMS
