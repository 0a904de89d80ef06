"""A claim round's order deliveries are ingested together: one `ingest_orders` call and one
commit for the round, not one each; a delivery the store refuses fails alone, with its own
reason, and every other order of the round is stored and its delivery processed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

import sync.inbox_worker
from connectors.base import Capabilities, Order, OrderLine, OrderStatus
from connectors.memory import MemoryConnector, MemoryMarketplace
from connectors.webhook_handler import IngestOrder, VerifiedDelivery, WebhookAction
from sync.db import Database
from sync.inbox import record_delivery
from sync.inbox_worker import InboxChannel, InboxWorker
from sync.ingest import ChannelRef, IngestResult, ingest_orders
from sync.models import Channel, InboxState, WebhookDelivery
from sync.models import Order as OrderRow

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ORDERS = 8
POISON = "O-3"


class OrderBodies:
    """A handler whose every body is {"id": ..., "minute": ...}: an order with one line."""

    def verify(self, headers: Mapping[str, str], body: bytes) -> VerifiedDelivery:
        raise AssertionError("not used: the deliveries are stored by the test")

    def map(self, topic: str, body: bytes) -> WebhookAction:
        data = json.loads(body)
        return IngestOrder(
            Order(
                external_id=data["id"],
                status=OrderStatus.OPEN,
                currency="USD",
                updated_at=T0 + timedelta(minutes=data["minute"]),
                lines=(OrderLine("L1", "SKU-1", data.get("quantity", 1)),),
            )
        )


class Calls:
    """`ingest_orders` as the worker calls it, counted; the store "refuses" (ValueError, as an
    ingest does on a conflicting row) any call that includes the poisoned order."""

    def __init__(self, poison: str | None = None) -> None:
        self.poison = poison
        self.batches: list[list[str]] = []

    def __call__(
        self, session: Session, channel: ChannelRef, orders: Sequence[Order]
    ) -> IngestResult:
        ids = [order.external_id for order in orders]
        self.batches.append(ids)
        if self.poison in ids:
            raise ValueError("refused by the store")
        return ingest_orders(session, channel, orders)


def _record(database: Database, bodies: Sequence[dict[str, object]]) -> int:
    with database.session() as session:
        channel = Channel(name="shop", kind="memory")
        session.add(channel)
        session.flush()
        for n, body in enumerate(bodies):
            record_delivery(
                session,
                channel_id=channel.id,
                delivery_id=f"d-{n}",
                topic="orders/create",
                body=json.dumps(body).encode(),
                now=T0 + timedelta(seconds=n),
            )
        return channel.id


def _run_round(database: Database, channel_id: int) -> int:
    """One worker round; the write transactions committed during it."""
    commits = 0

    def count(_conn: object) -> None:
        nonlocal commits
        commits += 1

    connector = MemoryConnector(MemoryMarketplace(), name="shop", capabilities=Capabilities())
    worker = InboxWorker(
        database, [InboxChannel(ChannelRef(channel_id, "shop"), OrderBodies(), connector)]
    )
    event.listen(database.engine, "commit", count)
    try:
        asyncio.run(worker.process_once())
    finally:
        event.remove(database.engine, "commit", count)
    return commits


def _deliveries(database: Database) -> dict[str, tuple[InboxState, str | None]]:
    with database.read_session() as session:
        rows = session.execute(
            select(WebhookDelivery.delivery_id, WebhookDelivery.state, WebhookDelivery.error)
        )
        return {d: (state, error) for d, state, error in rows}


def _orders(database: Database) -> dict[str, int]:
    with database.read_session() as session:
        return {
            row.external_id: sum(line.quantity for line in row.lines)
            for row in session.scalars(select(OrderRow))
        }


def test_a_rounds_order_deliveries_are_ingested_in_one_call_and_one_commit(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = Calls()
    monkeypatch.setattr(sync.inbox_worker, "ingest_orders", calls)
    channel_id = _record(database, [{"id": f"O-{n}", "minute": 0} for n in range(ORDERS)])

    commits = _run_round(database, channel_id)

    assert calls.batches == [[f"O-{n}" for n in range(ORDERS)]]
    assert commits == 1
    assert _orders(database) == {f"O-{n}": 1 for n in range(ORDERS)}
    assert {state for state, _ in _deliveries(database).values()} == {InboxState.PROCESSED}


def test_a_refused_delivery_fails_alone_and_the_rest_are_stored(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = Calls(POISON)
    monkeypatch.setattr(sync.inbox_worker, "ingest_orders", calls)
    bodies = [{"id": f"O-{n}", "minute": 0} for n in range(ORDERS)]
    channel_id = _record(database, bodies)

    commits = _run_round(database, channel_id)

    # The batch was refused, then each delivery was tried alone: in the order they came.
    assert calls.batches[0] == [f"O-{n}" for n in range(ORDERS)]
    assert calls.batches[1:] == [[f"O-{n}"] for n in range(ORDERS)]
    assert commits == 1
    assert _orders(database) == {f"O-{n}": 1 for n in range(ORDERS) if f"O-{n}" != POISON}
    states = _deliveries(database)
    poisoned = f"d-{POISON.removeprefix('O-')}"
    # Received, with its own reason, for another try (failed once MAX_ATTEMPTS are spent).
    assert states.pop(poisoned) == (
        InboxState.RECEIVED,
        "ingest failed: ValueError: refused by the store",
    )
    assert set(states.values()) == {(InboxState.PROCESSED, None)}


def test_versions_of_one_order_in_a_round_end_as_the_newest_whatever_their_order(
    database: Database,
) -> None:
    # The newest version arrives second of three; the oldest last (channels reorder retries).
    bodies = [
        {"id": "O-1", "minute": 1, "quantity": 1},
        {"id": "O-1", "minute": 3, "quantity": 3},
        {"id": "O-2", "minute": 0, "quantity": 2},
        {"id": "O-1", "minute": 2, "quantity": 2},
    ]
    channel_id = _record(database, bodies)

    assert _run_round(database, channel_id) == 1

    assert _orders(database) == {"O-1": 3, "O-2": 2}
    assert {state for state, _ in _deliveries(database).values()} == {InboxState.PROCESSED}
