"""Ingest survives SIGKILL at any moment: nothing acknowledged is lost, nothing is stored twice.

A worker process (`tests/sync/ingest_worker.py stream`) ingests a seeded stream of deliveries:
webhooks and poll pages from two channels, repeated, reordered, stale, with cancellations, removed
and added lines, partial shipments, bundles, an unmapped SKU and marketplace-fulfilled orders. It
prints `ACK` for an order only after the delivery's commit. The test reads those lines as they
come and SIGKILLs the worker after a seeded random number of new ACKs (1-30), 20 times, each time
restarting it a few deliveries before the first one it had not acknowledged, as a poller resumes
from its checkpoint with an overlap. After every kill, before anything is delivered again, the
store must already hold every acknowledged order at least at the acknowledged version, and the
ledger must match the stored lines. A last run goes to the end of the stream; then every order is
stored once, with the newest version the channel sent.
"""

from __future__ import annotations

import random
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connectors.base import Order as CanonicalOrder
from connectors.base import OrderStatus
from sync.db import Database, upgrade
from sync.models import (
    BundleComponent,
    Channel,
    Listing,
    Order,
    OrderLine,
    Reservation,
    Sku,
    StockLevel,
)
from tests.sync.ingest_worker import (
    STREAM_BUNDLES,
    STREAM_CHANNELS,
    STREAM_SKUS,
    WorkerProcess,
    build_stream,
)

SEED = 20250301
KILLS = 20
ACKS_BEFORE_KILL = (1, 30)
RUN_TIMEOUT_S = 60.0
# How many acknowledged deliveries a restart sends again, at most (a poller's overlap).
MAX_OVERLAP = 3


@dataclass
class _Progress:
    """What the channels were told so far."""

    acked: dict[tuple[str, str], datetime] = field(default_factory=dict)  # newest version acked
    last_acked_index: int = -1
    kills: int = 0
    runs: int = 0

    def record(self, line: str) -> None:
        """Take in one `ACK <index> <channel> <external_id> <updated_at>` line."""
        word, index, channel, external_id, updated_at = line.split(" ")
        assert word == "ACK", line
        key = (channel, external_id)
        at = datetime.fromisoformat(updated_at)
        self.acked[key] = max(at, self.acked.get(key, at))
        self.last_acked_index = max(self.last_acked_index, int(index))


def _set_up_catalogue(db: Database, rng: random.Random) -> tuple[dict[str, int], dict[str, int]]:
    """Channels, SKUs (a few nearly out of stock), bundles, listings; answer ids and on hand."""
    on_hand = {sku: rng.choice((0, 1, 2, 5, 500, 500, 500)) for sku in STREAM_SKUS}
    with db.session() as session:
        channels = [Channel(name=name, kind="memory") for name in STREAM_CHANNELS]
        session.add_all(channels)
        session.add_all(Sku(sku=sku) for sku in STREAM_SKUS)
        session.add_all(Sku(sku=bundle, is_bundle=True) for bundle in STREAM_BUNDLES)
        session.flush()
        session.add_all(
            BundleComponent(bundle_sku=bundle, component_sku=component, quantity=quantity)
            for bundle, parts in STREAM_BUNDLES.items()
            for component, quantity in parts.items()
        )
        session.add_all(
            StockLevel(sku=sku, location="default", on_hand=units) for sku, units in on_hand.items()
        )
        session.add_all(
            Listing(channel_id=channel.id, sku=sku, external_ref=f"{channel.name}:{sku}")
            for channel in channels
            for sku in (*STREAM_SKUS, *STREAM_BUNDLES)
        )
        session.flush()
        return {channel.name: channel.id for channel in channels}, on_hand


def _run_until_killed(
    worker: WorkerProcess, progress: _Progress, rng: random.Random, *, is_final: bool
) -> None:
    """Read its ACKs; kill it after a random number of them, or (final run) let it finish."""
    target = rng.randint(*ACKS_BEFORE_KILL)
    new_acks = 0
    finished = False
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (line := worker.next_line(deadline)) is not None:
        if line == "READY":
            continue
        if line == "DONE":
            finished = True
            continue
        progress.record(line)
        new_acks += 1
        if not is_final and new_acks >= target:
            # The moment of the kill, not a synchronisation: somewhere in the next delivery.
            time.sleep(rng.uniform(0, 0.015))
            worker.kill()
            progress.kills += 1
            # Lines printed before the kill landed were acknowledgements too: take them all in.
            while (line := worker.next_line(deadline)) is not None:
                if line != "DONE":
                    progress.record(line)
            break
    code = worker.finish(RUN_TIMEOUT_S)
    if is_final:
        assert (code, finished) == (0, True), f"final run exited {code}:\n{worker.stderr()}"
    else:
        assert code == -signal.SIGKILL, (
            f"run {progress.runs} ended on its own (exit {code}, stream done: {finished}) "
            f"before kill {progress.kills + 1}\n{worker.stderr()}"
        )


def _check_acknowledged(session: Session, channel_ids: dict[str, int], progress: _Progress) -> None:
    """Every acknowledged order is stored, at the version acknowledged or a newer one."""
    names = {channel_id: name for name, channel_id in channel_ids.items()}
    stored = {
        (names[channel_id], external_id): updated_at
        for channel_id, external_id, updated_at in session.execute(
            select(Order.channel_id, Order.external_id, Order.channel_updated_at)
        )
    }
    lost = {key: at for key, at in progress.acked.items() if key not in stored}
    assert not lost, f"acknowledged but not stored after kill {progress.kills}: {sorted(lost)}"
    behind = {key: (stored[key], at) for key, at in progress.acked.items() if stored[key] < at}
    assert not behind, f"stored older than acknowledged after kill {progress.kills}: {behind}"
    duplicates = session.execute(
        select(Order.channel_id, Order.external_id)
        .group_by(Order.channel_id, Order.external_id)
        .having(func.count() > 1)
    ).all()
    assert duplicates == []


def _check_ledger(session: Session, initial_on_hand: dict[str, int]) -> None:
    """reserved + consumed per SKU equals its live order lines, counted here from the lines."""
    components: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for bundle, component, quantity in session.execute(
        select(BundleComponent.bundle_sku, BundleComponent.component_sku, BundleComponent.quantity)
    ):
        components[bundle].append((component, quantity))
    expected: dict[str, int] = defaultdict(int)
    shipped: dict[str, int] = defaultdict(int)
    for status, is_reserving, sku, quantity, cancelled, quantity_shipped in session.execute(
        select(
            Order.status,
            Order.is_reserving,
            OrderLine.sku,
            OrderLine.quantity,
            OrderLine.quantity_cancelled,
            OrderLine.quantity_shipped,
        ).join(Order, OrderLine.order_id == Order.id)
    ):
        if sku is None or not is_reserving or status == OrderStatus.CANCELLED:
            continue  # unmapped, shipped by the marketplace, or cancelled: counts nothing
        for component, per in components.get(sku) or [(sku, 1)]:
            expected[component] += (quantity - cancelled) * per
            shipped[component] += quantity_shipped * per
    ledger: dict[str, int] = defaultdict(int)
    consumed: dict[str, int] = defaultdict(int)
    for sku, reserved_sum, consumed_sum in session.execute(
        select(Reservation.sku, func.sum(Reservation.reserved), func.sum(Reservation.consumed))
        .where(Reservation.location == "default")
        .group_by(Reservation.sku)
    ):
        ledger[sku] = int(reserved_sum) + int(consumed_sum)
        consumed[sku] = int(consumed_sum)
    assert session.scalar(select(func.count()).where(Reservation.location != "default")) == 0
    assert {s: n for s, n in ledger.items() if n} == {s: n for s, n in expected.items() if n}
    assert {s: n for s, n in consumed.items() if n} == {s: n for s, n in shipped.items() if n}

    # Shipped units left the building once each, however often the shipment was delivered.
    on_hand = dict(session.execute(select(StockLevel.sku, StockLevel.on_hand)).all())
    for sku, initial in initial_on_hand.items():
        if initial >= consumed[sku]:
            assert on_hand[sku] == initial - consumed[sku], sku
    # Available below zero only with an oversold order holding that SKU.
    reserved = dict(
        session.execute(
            select(Reservation.sku, func.sum(Reservation.reserved)).group_by(Reservation.sku)
        ).all()
    )
    oversold_skus = set(
        session.scalars(
            select(Reservation.sku)
            .join(OrderLine, Reservation.order_line_id == OrderLine.id)
            .join(Order, OrderLine.order_id == Order.id)
            .where(Order.is_oversold.is_(True), Reservation.reserved > 0)
        )
    )
    short = {sku for sku, units in on_hand.items() if units - int(reserved.get(sku) or 0) < 0}
    assert short <= oversold_skus, f"short without an oversold order: {short - oversold_skus}"


def _newest_versions(seed: int) -> dict[tuple[str, str], CanonicalOrder]:
    newest: dict[tuple[str, str], CanonicalOrder] = {}
    for delivery in build_stream(seed):
        for order in delivery.orders:
            key = (delivery.channel, order.external_id)
            if key not in newest or order.updated_at > newest[key].updated_at:
                newest[key] = order
    return newest


def _check_newest_stored(session: Session, channel_ids: dict[str, int]) -> None:
    """Each order of the stream is stored once, as its newest version says."""
    newest = _newest_versions(SEED)
    names = {channel_id: name for name, channel_id in channel_ids.items()}
    rows = {(names[row.channel_id], row.external_id): row for row in session.scalars(select(Order))}
    assert rows.keys() == newest.keys()
    ours = set(STREAM_SKUS) | set(STREAM_BUNDLES)
    for key, order in newest.items():
        row = rows[key]
        assert (row.status, row.channel_updated_at, row.is_reserving) == (
            order.status,
            order.updated_at,
            order.is_reserving,
        ), key
        stored_lines = {line.external_line_id: line for line in row.lines}
        for line in order.lines:
            got = stored_lines.pop(line.external_line_id)
            assert (
                got.channel_sku,
                got.sku,
                got.quantity,
                got.quantity_cancelled,
                got.quantity_shipped,
            ) == (
                line.sku,
                line.sku if line.sku in ours else None,
                line.quantity,
                line.quantity_cancelled,
                line.quantity_shipped,
            ), (key, line.external_line_id)
        for dropped in stored_lines.values():  # lines the channel removed: kept, but released
            assert (dropped.extra or {}).get("removed") is True, (key, dropped.external_line_id)
            assert dropped.quantity_cancelled == dropped.quantity - dropped.quantity_shipped


def test_killed_ingest_loses_and_doubles_nothing(db_url: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    db = Database(db_url)
    try:
        upgrade(db)
        channel_ids, initial_on_hand = _set_up_catalogue(db, rng)
        stream_length = len(build_stream(SEED))
        progress = _Progress()
        start = 0
        while True:
            is_final = progress.kills == KILLS
            spec = {"url": db.url, "seed": SEED, "channels": channel_ids, "start": start}
            worker = WorkerProcess("stream", tmp_path, f"run-{progress.runs:02d}", spec=spec)
            progress.runs += 1
            _run_until_killed(worker, progress, rng, is_final=is_final)
            with db.read_session() as session:
                _check_acknowledged(session, channel_ids, progress)
                _check_ledger(session, initial_on_hand)
            if is_final:
                break
            # Resume at the first unacknowledged delivery, or a few before it.
            start = max(0, progress.last_acked_index + 1 - rng.randint(0, MAX_OVERLAP))
        assert progress.last_acked_index == stream_length - 1
        with db.read_session() as session:
            _check_newest_stored(session, channel_ids)
    finally:
        db.dispose()
