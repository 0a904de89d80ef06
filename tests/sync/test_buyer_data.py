"""Buyers' personal data after retention: erased from delivered orders, facts kept, never back.

On both databases, reading the rows: the purge erases ship_to and buyer_ref of orders shipped or
cancelled more than `buyer_data_days` ago and keeps ids, lines, money, dates and reservations;
orders still open, or delivered within retention, keep their data; a later ingest of an erased
order (skipped as not newer, or applied as newer, beside new orders that take the batched insert
path) leaves it erased. On PostgreSQL the purge waits for an ingest holding the order's lock. And
the running Service purges on its own schedule, logging counts only. Amazon's own example orders
put every piece of buyer data where erasure reaches it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, text, update

from connectors.amazon.mapper import order_from_api
from connectors.base import Address, Money, Order, OrderLine, OrderStatus
from sync.buyer_data import erase_buyer, erase_where, purge_buyer_data, ship_to_of
from sync.db import Database
from sync.ingest import ChannelRef, ingest_orders
from sync.models import Channel, Reservation, Sku, StockLevel
from sync.models import Order as OrderRow
from sync.models import OrderLine as LineRow
from sync.reservations import lock_orders
from sync.service import Listener, Service, ServiceSettings
from tests.connectors.amazon.conftest import orders_model, sandbox_examples

NOW = datetime.now(UTC)
DAYS = 30
CANARY_NAME = "Philippa Retentionwood"
CANARY_PHONE = "+44 7700 900123"
CANARY_EMAIL = "philippa-canary@marketplace.amazon.example"
DEADLINE_S = 20.0


def _order(
    external_id: str,
    status: OrderStatus,
    *,
    updated_at: datetime,
    buyer: str = CANARY_EMAIL,
) -> Order:
    shipped = 2 if status is OrderStatus.SHIPPED else 0
    cancelled = 2 if status is OrderStatus.CANCELLED else 0
    return Order(
        external_id=external_id,
        number=f"#{external_id}",
        status=status,
        currency="EUR",
        updated_at=updated_at,
        created_at=updated_at - timedelta(days=2),
        total=Money(Decimal("25.98"), "EUR"),
        lines=[
            OrderLine(
                external_line_id=f"{external_id}-1",
                sku="A",
                quantity=2,
                quantity_shipped=shipped,
                quantity_cancelled=cancelled,
                unit_price=Money(Decimal("12.99"), "EUR"),
            )
        ],
        ship_to=Address(
            name=CANARY_NAME,
            line1="4 Purge Street",
            city="Leeds",
            postal_code="LS1 4AP",
            country_code="GB",
            phone=CANARY_PHONE,
        ),
        buyer_ref=buyer,
    )


def _seed(database: Database) -> ChannelRef:
    with database.session() as session:
        channel = Channel(name="amazon-uk", kind="amazon")
        session.add_all([channel, Sku(sku="A")])
        session.flush()
        session.add(StockLevel(sku="A", location="default", on_hand=100))
        session.flush()
        return ChannelRef(channel.id, "amazon-uk")


def _ingest(database: Database, channel: ChannelRef, *orders: Order) -> None:
    with database.session() as session:
        ingest_orders(session, channel, list(orders))


def _age(database: Database, external_id: str, *, here: int, channel: int) -> None:
    """Make the order look last changed `here` days ago in the store and `channel` days ago on
    the channel (an UPDATE that names updated_at keeps that value)."""
    with database.session() as session:
        session.execute(
            update(OrderRow)
            .where(OrderRow.external_id == external_id)
            .values(
                updated_at=NOW - timedelta(days=here),
                channel_updated_at=NOW - timedelta(days=channel),
            )
        )


def _facts(database: Database) -> dict[str, dict[str, Any]]:
    """Per order: everything but the buyer data and our own updated-at."""
    with database.read_session() as session:
        found: dict[str, dict[str, Any]] = {}
        for row in session.scalars(select(OrderRow)):
            lines = [
                (line.id, line.external_line_id, line.sku, line.quantity, line.unit_price)
                for line in session.scalars(select(LineRow).where(LineRow.order_id == row.id))
            ]
            reservations = [
                (r.sku, r.reserved, r.consumed, r.released)
                for r in session.scalars(
                    select(Reservation).where(Reservation.order_line_id.in_([x[0] for x in lines]))
                )
            ]
            found[row.external_id] = {
                "id": row.id,
                "number": row.number,
                "status": row.status,
                "currency": row.currency,
                "total": row.total,
                "created": row.channel_created_at,
                "channel_updated": row.channel_updated_at,
                "ingested": row.ingested_at,
                "lines": lines,
                "reservations": reservations,
            }
        return found


def _buyer_data(database: Database) -> dict[str, tuple[Any, Any, Any]]:
    """Per order: (ship_to, buyer_ref, pii_erased_at)."""
    with database.read_session() as session:
        return {
            row.external_id: (ship_to_of(row), row.buyer_ref, row.pii_erased_at)
            for row in session.scalars(select(OrderRow))
        }


def _has_data(row: tuple[Any, Any, Any]) -> bool:
    ship_to, ref, erased = row
    return (
        erased is None
        and ref == CANARY_EMAIL
        and ship_to is not None
        and (ship_to["name"], ship_to["phone"]) == (CANARY_NAME, CANARY_PHONE)
    )


def _is_erased(row: tuple[Any, Any, Any]) -> bool:
    ship_to, ref, erased = row
    return ship_to is None and ref is None and erased is not None


def _seed_orders(database: Database) -> ChannelRef:
    """Orders on both sides of retention (days since the change here, on the channel)."""
    channel = _seed(database)
    old = NOW - timedelta(days=45)
    _ingest(
        database,
        channel,
        _order("SHIPPED-45", OrderStatus.SHIPPED, updated_at=old),
        _order("CANCELLED-45", OrderStatus.CANCELLED, updated_at=old),
        _order("OPEN-45", OrderStatus.OPEN, updated_at=old),  # never delivered: kept
        _order("SHIPPED-10", OrderStatus.SHIPPED, updated_at=old),  # delivered 10 days ago
        _order("SHIPPED-HERE-2", OrderStatus.SHIPPED, updated_at=old),  # shipped here 2 days ago
    )
    for ext, here, on_channel in [
        ("SHIPPED-45", 45, 45),
        ("CANCELLED-45", 31, 40),
        ("OPEN-45", 45, 45),
        ("SHIPPED-10", 10, 10),
        ("SHIPPED-HERE-2", 2, 45),
    ]:
        _age(database, ext, here=here, channel=on_channel)
    return channel


def test_the_purge_erases_delivered_orders_past_retention_and_keeps_the_facts(
    database: Database,
) -> None:
    _seed_orders(database)
    before = _facts(database)
    assert all(_has_data(row) for row in _buyer_data(database).values())

    assert purge_buyer_data(database, NOW, days=DAYS, chunk=1) == 2  # chunks of one: loops

    after = _buyer_data(database)
    assert {ext for ext, row in after.items() if _is_erased(row)} == {"SHIPPED-45", "CANCELLED-45"}
    assert {ext for ext, row in after.items() if _has_data(row)} == {
        "OPEN-45",
        "SHIPPED-10",
        "SHIPPED-HERE-2",
    }
    assert after["SHIPPED-45"][2] == NOW
    assert _facts(database) == before  # ids, lines, money, dates, reservations: all kept
    assert before["SHIPPED-45"]["reservations"] == [("A", 0, 2, 0)]
    assert before["SHIPPED-45"]["total"] == Decimal("25.98")

    # Idempotent: a second run (another instance, the next hour) finds nothing to do.
    assert purge_buyer_data(database, NOW + timedelta(hours=1), days=DAYS) == 0
    assert _buyer_data(database)["SHIPPED-45"][2] == NOW
    # The others go when their time comes.
    later = purge_buyer_data(database, NOW + timedelta(days=29), days=DAYS)
    assert later == 2  # SHIPPED-10 and SHIPPED-HERE-2; OPEN-45 is never delivered
    assert _has_data(_buyer_data(database)["OPEN-45"])


def test_a_re_ingest_of_an_erased_order_does_not_bring_the_data_back(database: Database) -> None:
    channel = _seed_orders(database)
    assert purge_buyer_data(database, NOW, days=DAYS) == 2
    with database.read_session() as session:
        stored_at = session.scalar(
            select(OrderRow.channel_updated_at).where(OrderRow.external_id == "SHIPPED-45")
        )
    assert stored_at is not None

    # Not newer: skipped. Newer (the channel changed the order): applied, data still gone. In
    # the same batch a new order (PostgreSQL: the batched insert) keeps its own data.
    same = _order("SHIPPED-45", OrderStatus.SHIPPED, updated_at=stored_at)
    newer = dataclasses.replace(
        _order("CANCELLED-45", OrderStatus.CANCELLED, updated_at=NOW),
        number="#CANCELLED-45-amended",
    )
    _ingest(database, channel, same, newer, _order("NEW-1", OrderStatus.OPEN, updated_at=NOW))
    _ingest(database, channel, dataclasses.replace(same, updated_at=NOW))  # newer, alone

    data = _buyer_data(database)
    assert _is_erased(data["SHIPPED-45"]) and _is_erased(data["CANCELLED-45"])
    assert _has_data(data["NEW-1"])
    facts = _facts(database)
    assert facts["CANCELLED-45"]["number"] == "#CANCELLED-45-amended"  # the update did apply
    assert facts["SHIPPED-45"]["channel_updated"] == NOW


def test_erase_buyer_erases_one_buyer_on_one_channel(database: Database) -> None:
    channel = _seed(database)
    other = "someone-else@marketplace.amazon.example"
    _ingest(
        database,
        channel,
        _order("MINE-1", OrderStatus.OPEN, updated_at=NOW),
        _order("MINE-2", OrderStatus.SHIPPED, updated_at=NOW),
        _order("THEIRS", OrderStatus.OPEN, updated_at=NOW, buyer=other),
    )
    with database.session() as session:
        assert erase_buyer(session, channel.id, CANARY_EMAIL, NOW) == 2
        assert erase_buyer(session, channel.id + 1, other, NOW) == 0  # another channel's buyer
    data = _buyer_data(database)
    assert _is_erased(data["MINE-1"]) and _is_erased(data["MINE-2"])
    assert data["THEIRS"][1] == other and data["THEIRS"][2] is None
    _ingest(database, channel, _order("MINE-1", OrderStatus.OPEN, updated_at=NOW + timedelta(1)))
    assert _is_erased(_buyer_data(database)["MINE-1"])


def test_the_purge_waits_for_an_ingest_holding_the_order(pg_database: Database) -> None:
    database = pg_database
    channel = _seed_orders(database)
    done: list[int] = []
    with database.session() as holder:
        lock_orders(holder, [(channel.id, "SHIPPED-45")])  # as ingest does first
        purge = threading.Thread(
            target=lambda: done.append(purge_buyer_data(database, NOW, days=DAYS))
        )
        purge.start()
        _until(lambda: _advisory_waiters(database) > 0, "the purge to wait for the order's lock")
        assert not done and _has_data(_buyer_data(database)["SHIPPED-45"])
    purge.join(DEADLINE_S)
    assert done == [2]
    assert _is_erased(_buyer_data(database)["SHIPPED-45"])


def _advisory_waiters(database: Database) -> int:
    with database.read_session() as session:
        count = session.scalar(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        )
    return int(count or 0)


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {DEADLINE_S} s waiting for {what}")
        time.sleep(0.02)


def test_the_running_service_purges_on_its_schedule_and_logs_counts_only(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    _seed_orders(database)
    settings = ServiceSettings(
        webhooks=Listener("webhooks", "127.0.0.1", 0),
        admin=Listener("admin", "127.0.0.1", 0),
        admin_token="buyer-data-token",
        drain_deadline_s=5,
        auto_migrate=True,
        channels={},
        inbox_retention_days=14,
        events_retention_days=90,
        version="test",
        buyer_data_days=DAYS,
        buyer_data_purge_every_s=0.2,
    )

    async def scenario() -> None:
        ready = asyncio.Event()
        service = Service(settings, database, on_ready=lambda _: ready.set())
        running = asyncio.create_task(service.run())
        await asyncio.wait_for(ready.wait(), DEADLINE_S)
        job = service.scheduler.get_job("retention.buyer_data")
        assert job is not None
        deadline = time.monotonic() + DEADLINE_S
        while not _is_erased(_buyer_data(database)["SHIPPED-45"]):
            assert time.monotonic() < deadline, "the scheduled purge never erased the order"
            await asyncio.sleep(0.05)
        service.request_stop()
        assert await asyncio.wait_for(running, DEADLINE_S) == 0

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    data = _buyer_data(database)
    assert {ext for ext, row in data.items() if _is_erased(row)} == {"SHIPPED-45", "CANCELLED-45"}
    assert "erased the buyer data of 2 orders" in caplog.text
    for canary in (CANARY_NAME, CANARY_PHONE, CANARY_EMAIL, "Purge Street"):
        assert canary not in caplog.text


def _personal(raw: Any) -> set[str]:
    """Names, e-mails, phones and street lines in an Amazon example."""
    keys = {"buyerName", "buyerEmail", "name", "phone", "addressLine1", "addressLine2"}
    found: set[str] = set()
    if isinstance(raw, dict):
        for key, value in raw.items():
            if key in keys and isinstance(value, str) and value:
                found.add(value)
            found |= _personal(value)
    elif isinstance(raw, list):
        for value in raw:
            found |= _personal(value)
    return found


def _store_text(database: Database) -> str:
    """Every row of the tables an order touches, as text, with every ship-to opened."""
    with database.read_session() as session:
        rows = [
            repr(row)
            for table in ("orders", "order_lines", "reservations", "events", "shipments")
            for row in session.execute(text(f"SELECT * FROM {table}"))  # noqa: S608 - fixed names
        ]
        opened = [repr(ship_to_of(order)) for order in session.scalars(select(OrderRow))]
        return "\n".join(rows + opened)


def test_amazon_buyer_data_lands_only_where_erasure_reaches(database: Database) -> None:
    channel = _seed(database)
    raws = [
        raw
        for example in sandbox_examples(orders_model(), "searchOrders", "200")
        for raw in example["response"]["orders"]
    ]
    personal = set().union(*(_personal(raw) for raw in raws))
    assert len(personal) >= 3  # the examples do carry names, e-mails, addresses
    _ingest(database, channel, *(order_from_api(raw) for raw in raws))
    stored = _store_text(database)
    assert any(value in stored for value in personal)  # kept while the order needs it

    with database.session() as session:
        erase_where(session, OrderRow.channel_id == channel.id, NOW)
    stored = _store_text(database)
    assert [value for value in personal if value in stored] == []
    with database.read_session() as session:
        assert session.scalar(select(OrderRow.id).limit(1)) is not None  # the orders stay
