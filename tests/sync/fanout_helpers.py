"""Helpers for the status-out tests: a store with reference channels, orders, and a worker run."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select

from connectors.base import Capabilities
from sync.db import Database
from sync.fanout_worker import FanoutChannel, FanoutWorker
from sync.metrics import Metrics
from sync.models import (
    Event,
    Listing,
    Order,
    OrderLine,
    OutboxJob,
    Reservation,
    Shipment,
    ShipmentLine,
    StockLevel,
)
from sync.outbox import RetrySchedule
from tests.sync.engine_harness import (
    ChannelSpec,
    Snapshot,
    Store,
    StoreSpec,
    build_store,
    check_ledger_matches_lines,
    check_oversold_flags,
)

PLAIN = Capabilities(max_in_flight=3)  # no dedupe on our key: ask before a resend
IDEMPOTENT = Capabilities(max_in_flight=2, idempotent_fulfillment=True)
FAST_RETRY = RetrySchedule(max_attempts=60, base_s=0.001, cap_s=0.01)
IDLE_TIMEOUT_S = 60.0


def make_store(database: Database, *, on_hand: int = 10) -> Store:
    """Channels `shop` (plain) and `market` (idempotent); SKUs A, B and KIT = 2 A + 1 B."""
    spec = StoreSpec(
        channels=[ChannelSpec("shop", PLAIN), ChannelSpec("market", IDEMPOTENT)],
        skus=["A", "B"],
        bundles={"KIT": {"A": 2, "B": 1}},
        on_hand={("A", "default"): on_hand, ("B", "default"): on_hand},
    )
    return build_store(database, spec)


def place(store: Store, channel: str, lines: Sequence[tuple[str, int]]) -> tuple[str, int]:
    """A buyer orders on the channel and the order is ingested; answer (its id there, ours)."""
    order = store.channels[channel].market.place_order(list(lines))
    result = store.ingest(channel, [order])
    return order.external_id, result.order_ids[order.external_id]


def redeliver(store: Store, channel: str, external_id: str) -> None:
    """Ingest the channel's current version of an order (a poll or webhook)."""
    store.ingest(channel, [store.channels[channel].market.order(external_id)])


def lines_of(database: Database, order_id: int) -> dict[str, tuple[int, int, int]]:
    """external line id -> (quantity, cancelled, shipped) as stored."""
    with database.read_session() as session:
        return {
            ext: (qty, cancelled, shipped)
            for ext, qty, cancelled, shipped in session.execute(
                select(
                    OrderLine.external_line_id,
                    OrderLine.quantity,
                    OrderLine.quantity_cancelled,
                    OrderLine.quantity_shipped,
                ).where(OrderLine.order_id == order_id)
            )
        }


def status_of(database: Database, order_id: int) -> str:
    """The stored order's status."""
    with database.read_session() as session:
        return session.get_one(Order, order_id).status.value


def on_hand(database: Database) -> dict[str, int]:
    """SKU -> units on hand at the default location."""
    with database.read_session() as session:
        return dict(
            session.execute(
                select(StockLevel.sku, StockLevel.on_hand).where(StockLevel.location == "default")
            ).all()
        )


def check_ledger(database: Database) -> None:
    """Invariant 3 on the tables: reserved + consumed = live lines per SKU; oversold flags."""
    with database.read_session() as session:
        snapshot = Snapshot.read(session)
    check_ledger_matches_lines(snapshot)
    check_oversold_flags(snapshot)


def store_state(database: Database) -> tuple[object, ...]:
    """Every table a shipment or cancellation writes, for before/after comparisons."""
    with database.read_session() as session:
        return (
            sorted(
                session.execute(select(StockLevel.sku, StockLevel.location, StockLevel.on_hand))
            ),
            sorted(
                session.execute(
                    select(
                        OrderLine.id,
                        OrderLine.quantity_cancelled,
                        OrderLine.quantity_shipped,
                        OrderLine.shipped_floor,
                        OrderLine.cancelled_floor,
                    )
                )
            ),
            sorted(session.execute(select(Order.id, Order.status, Order.is_oversold))),
            sorted(
                session.execute(
                    select(
                        Reservation.id,
                        Reservation.reserved,
                        Reservation.consumed,
                        Reservation.released,
                    )
                )
            ),
            sorted(session.execute(select(Shipment.id, Shipment.external_id))),
            sorted(session.execute(select(ShipmentLine.shipment_id, ShipmentLine.quantity))),
            sorted(session.execute(select(OutboxJob.id, OutboxJob.state, OutboxJob.attempts))),
            sorted(session.execute(select(Listing.id, Listing.is_dirty))),
            sorted(session.scalars(select(Event.id))),
        )


def clean_listings(database: Database) -> None:
    """Mark every listing clean, so a test can see which ones a change marks dirty."""
    with database.session() as session:
        for listing in session.scalars(select(Listing)):
            listing.is_dirty = False


def dirty_skus(database: Database) -> set[tuple[int, str]]:
    """(channel id, SKU) of every dirty listing."""
    with database.read_session() as session:
        return set(
            session.execute(
                select(Listing.channel_id, Listing.sku).where(Listing.is_dirty.is_(True))
            ).all()
        )


def worker_for(
    store: Store,
    *,
    metrics: Metrics | None = None,
    lease: timedelta = timedelta(seconds=120),
    retry: RetrySchedule = FAST_RETRY,
) -> FanoutWorker:
    """A fan-out worker over every channel of the store."""
    return FanoutWorker(
        store.db,
        [FanoutChannel(c.name, c.id, c.connector) for c in store.channels.values()],
        metrics=metrics,
        idle_s=0.01,
        lease=lease,
        retry=retry,
    )


async def run_until_idle(worker: FanoutWorker, within_s: float = IDLE_TIMEOUT_S) -> None:
    """Run the worker until no shipment or cancel job is pending or running, then stop it."""
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    idle = asyncio.create_task(worker.wait_idle(poll_s=0.005))
    try:
        done, _ = await asyncio.wait(
            {running, idle}, timeout=within_s, return_when="FIRST_COMPLETED"
        )
        if running in done:
            running.result()
            raise AssertionError("the fan-out worker stopped before it was idle")
        if idle not in done:
            raise AssertionError(f"the fan-out worker was not idle within {within_s} s")
    finally:
        idle.cancel()
        stop.set()
        await asyncio.wait_for(running, within_s)


def drain(
    store: Store, *, metrics: Metrics | None = None, lease: timedelta = timedelta(seconds=120)
) -> FanoutWorker:
    """Run a fresh worker over the store until idle; answer it."""
    worker = worker_for(store, metrics=metrics, lease=lease)
    asyncio.run(run_until_idle(worker))
    return worker
