"""Bad channel data: refused with a logged reason and nothing stored; unknown SKUs kept, unmapped."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import generate_latest
from sqlalchemy import func, select

from connectors.base import Address, Money, Order, OrderLine, OrderStatus, RawPayload
from sync.db import Database
from sync.ingest import ChannelRef, ingest_orders
from sync.intake import map_orders
from sync.metrics import Metrics
from sync.models import Channel, Reservation, Sku, StockLevel
from sync.models import Order as OrderRow
from sync.models import OrderLine as OrderLineRow

CANARY_BUYER = "Canary Buyer-7Qx"


def simple_mapper(raw: RawPayload) -> Order:
    """A minimal channel mapper: raw dicts as a marketplace might send them."""
    currency = raw["currency"]
    return Order(
        external_id=str(raw["id"]),
        status=OrderStatus.OPEN,
        currency=currency,
        updated_at=datetime.fromisoformat(raw["updated_at"]),
        total=Money(Decimal(raw["total"]), currency),
        ship_to=Address(name=raw.get("buyer"), country_code="GB"),
        lines=[
            OrderLine(
                external_line_id=str(line["id"]),
                sku=line["sku"],
                quantity=line["quantity"],
                unit_price=Money(Decimal(line["price"]), currency),
            )
            for line in raw["lines"]
        ],
    )


def raw(
    order_id: str, *, sku: str = "MUG", quantity: Any = 1, total: str = "9.50"
) -> dict[str, Any]:
    return {
        "id": order_id,
        "currency": "GBP",
        "updated_at": "2026-11-01T10:00:00+00:00",
        "total": total,
        "buyer": CANARY_BUYER,
        "lines": [{"id": f"{order_id}-1", "sku": sku, "quantity": quantity, "price": "9.50"}],
    }


@pytest.fixture
def store(database: Database) -> tuple[Database, ChannelRef]:
    with database.session() as session:
        channel = Channel(name="shop", kind="memory")
        session.add(channel)
        session.add(Sku(sku="MUG"))
        session.flush()
        session.add(StockLevel(sku="MUG", location="default", on_hand=5))
        channel_id = channel.id
    return database, ChannelRef(channel_id, "shop")


def test_malformed_records_are_refused_with_a_reason_and_the_rest_stored(
    store: tuple[Database, ChannelRef], caplog: pytest.LogCaptureFixture
) -> None:
    db, channel = store
    records = [
        raw("GOOD-1"),
        raw("NEG-1", quantity=-2),
        raw("MONEY-1", total="12,50"),
        raw("MONEY-2", total="a lot"),
        raw("FLOAT-Q", quantity=1.5),
        {"id": "NOLINES", "currency": "GBP"},
        raw("GOOD-2"),
    ]
    with caplog.at_level(logging.WARNING, logger="sync.intake"):
        page = map_orders("shop", records, simple_mapper)
    refused = {r.record_id: r.reason for r in page.refused}
    assert set(refused) == {"NEG-1", "MONEY-1", "MONEY-2", "FLOAT-Q", "NOLINES"}
    assert "quantity" in refused["NEG-1"]
    assert "money" in refused["MONEY-1"]
    assert "missing field" in refused["NOLINES"]

    with db.session() as session:
        ingest_orders(session, channel, page.orders)
    with db.read_session() as session:
        stored = set(session.scalars(select(OrderRow.external_id)))
        reserved = session.scalar(select(func.sum(Reservation.reserved)))
    assert stored == {"GOOD-1", "GOOD-2"}
    assert reserved == 2

    logged = caplog.text
    for record_id in refused:
        assert f"order {record_id} refused" in logged
    assert CANARY_BUYER not in logged


def test_unknown_sku_is_stored_unmapped_reserves_nothing_and_is_counted(
    store: tuple[Database, ChannelRef],
) -> None:
    db, channel = store
    page = map_orders("shop", [raw("U-1", sku="NOT-OURS", quantity=3)], simple_mapper)
    assert not page.refused
    with db.session() as session:
        ingest_orders(session, channel, page.orders)
    with db.read_session() as session:
        line = session.scalars(select(OrderLineRow)).one()
        reservations = session.scalar(select(func.count()).select_from(Reservation))
    assert line.sku is None
    assert line.is_unmapped
    assert line.channel_sku == "NOT-OURS"
    assert reservations == 0

    metrics = Metrics("test")
    metrics.watch_store(db.read_session)
    text = generate_latest(metrics.registry).decode()
    assert 'channel_sync_unmapped_lines{channel="shop"} 1.0' in text
