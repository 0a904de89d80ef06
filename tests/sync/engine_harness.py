"""Shared helpers for the engine tests: a store with reference channels, an oracle, invariants.

The oracle and the invariant checks read the tables and compute what the engine should have
decided on their own; they never call the engine's planning or ledger code, so a misreading
there cannot hide itself.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connectors.base import Capabilities, OrderStatus
from connectors.base import Order as ChannelOrder
from connectors.memory import MemoryConnector, MemoryMarketplace
from sync.db import Database
from sync.ingest import ChannelRef, IngestResult, ingest_orders
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
from sync.outbox import RetrySchedule
from sync.pusher import PushChannel, StockPusher
from sync.reservations import StockRules
from sync.stock_push import ChannelStockPlan

IDLE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ChannelSpec:
    """One reference channel to set up: how it pushes, what it is shown, where it ships from."""

    name: str
    capabilities: Capabilities = field(default_factory=Capabilities)
    rules: StockRules = field(default_factory=StockRules)
    locations: tuple[str, ...] = ("default",)


@dataclass(frozen=True)
class StoreSpec:
    """Channels, plain SKUs, bundles (bundle -> component -> units) and on hand per location."""

    channels: Sequence[ChannelSpec]
    skus: Sequence[str]
    bundles: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    on_hand: Mapping[tuple[str, str], int] = field(default_factory=dict)


@dataclass
class RefChannel:
    """A reference channel as the tests hold it: store id, marketplace, connector, rules."""

    spec: ChannelSpec
    id: int
    market: MemoryMarketplace
    connector: MemoryConnector

    @property
    def name(self) -> str:
        """The channel's name."""
        return self.spec.name

    @property
    def ref(self) -> ChannelRef:
        """The channel as ingest needs it."""
        return ChannelRef(self.id, self.spec.name, self.spec.locations)

    @property
    def plan(self) -> ChannelStockPlan:
        """The channel as the stock planner needs it."""
        return ChannelStockPlan(self.id, self.spec.rules, self.spec.locations)

    def new_connector(self) -> None:
        """A fresh connector to the same marketplace (a restarted process has no old objects)."""
        self.connector = MemoryConnector(
            self.market, name=self.spec.name, capabilities=self.spec.capabilities
        )


@dataclass
class Store:
    """A store set up from a StoreSpec, and the reference channels that sell from it."""

    db: Database
    spec: StoreSpec
    channels: dict[str, RefChannel]

    @property
    def all_skus(self) -> list[str]:
        """Every SKU a listing exists for: plain ones and bundles."""
        return [*self.spec.skus, *self.spec.bundles]

    def push_channels(self, names: Collection[str] | None = None) -> list[PushChannel]:
        """What a StockPusher serves: every channel, or those named."""
        return [
            PushChannel(c.name, c.connector, c.plan)
            for c in self.channels.values()
            if names is None or c.name in names
        ]

    def ingest(self, channel: str, orders: Sequence[ChannelOrder]) -> IngestResult:
        """Ingest a channel's orders in one transaction, as a webhook or poll page would."""
        ref = self.channels[channel].ref
        return self.db.transact(lambda session: ingest_orders(session, ref, orders))


def build_store(
    db: Database, spec: StoreSpec, *, seed: int = 0, allow_oversell: bool = True
) -> Store:
    """Create channels, SKUs, bundles, stock levels and one listing per SKU per channel.

    A listing's external ref is its SKU, so buyers on every marketplace buy by SKU. With
    `allow_oversell` False a marketplace refuses a buyer who wants more than it shows.
    """
    skus = [*spec.skus, *spec.bundles]
    with db.session() as session:
        rows = [Channel(name=c.name, kind="memory") for c in spec.channels]
        session.add_all(rows)
        session.add_all(Sku(sku=sku, is_bundle=sku in spec.bundles) for sku in skus)
        session.flush()
        session.add_all(
            BundleComponent(bundle_sku=bundle, component_sku=component, quantity=units)
            for bundle, parts in spec.bundles.items()
            for component, units in parts.items()
        )
        session.add_all(
            StockLevel(sku=sku, location=location, on_hand=units)
            for (sku, location), units in spec.on_hand.items()
        )
        session.add_all(
            Listing(channel_id=row.id, sku=sku, external_ref=sku) for row in rows for sku in skus
        )
        session.flush()
        ids = {row.name: row.id for row in rows}
    return attach_store(db, spec, ids, seed=seed, allow_oversell=allow_oversell)


def attach_store(
    db: Database,
    spec: StoreSpec,
    channel_ids: Mapping[str, int],
    *,
    seed: int = 0,
    allow_oversell: bool = True,
) -> Store:
    """A Store over a database that already holds what `build_store` creates for `spec`, with
    new reference marketplaces (showing nothing yet) and connectors."""
    channels = {}
    for index, channel in enumerate(spec.channels):
        market = MemoryMarketplace(
            rng=random.Random(seed * 31 + index), allow_oversell=allow_oversell
        )
        connector = MemoryConnector(market, name=channel.name, capabilities=channel.capabilities)
        channels[channel.name] = RefChannel(channel, channel_ids[channel.name], market, connector)
    return Store(db=db, spec=spec, channels=channels)


def show_what_was_pushed(store: Store) -> None:
    """Every marketplace shows what the store says it was last told (for a store that was
    copied from one in sync)."""
    names = {c.id: name for name, c in store.channels.items()}
    with store.db.read_session() as session:
        for channel_id, ref, quantity in session.execute(
            select(Listing.channel_id, Listing.external_ref, Listing.last_pushed_quantity)
        ):
            if quantity is not None:
                store.channels[names[channel_id]].market.set_stock(ref, quantity)


def start_in_sync(store: Store) -> None:
    """Every channel shows what the rules give for the ledger, and the store knows it: the state
    after the daemon's first push, set directly (the pusher's first push is tested on its own)."""
    with store.db.read_session() as session:
        expected = expected_channel_quantities(session, store)
    names = {c.id: name for name, c in store.channels.items()}
    with store.db.session() as session:
        rows = []
        for listing_id, channel_id, ref in session.execute(
            select(Listing.id, Listing.channel_id, Listing.external_ref)
        ):
            quantity = expected[names[channel_id]][ref]
            store.channels[names[channel_id]].market.set_stock(ref, quantity)
            rows.append({"id": listing_id, "last_pushed_quantity": quantity, "is_dirty": False})
        session.execute(update(Listing), rows)


async def push_until_idle(
    store: Store,
    *,
    within_s: float = IDLE_TIMEOUT_S,
    retry: RetrySchedule | None = None,
    channels: Collection[str] | None = None,
) -> StockPusher:
    """Run a StockPusher over every channel (or those named) until nothing is dirty or pending
    there, then stop it."""
    pusher = StockPusher(store.db, store.push_channels(channels), idle_s=0.05, retry=retry)
    stop = asyncio.Event()
    running = asyncio.create_task(pusher.run(stop))
    idle = asyncio.create_task(pusher.wait_idle(poll_s=0.005))
    try:
        # A pusher that dies never reports idle: wait for whichever ends first, and re-raise.
        done, _ = await asyncio.wait(
            {running, idle}, timeout=within_s, return_when="FIRST_COMPLETED"
        )
        if running in done:
            running.result()
            raise AssertionError("the stock pusher stopped before it was idle")
        if idle not in done:
            raise AssertionError(f"the stock pusher was not idle within {within_s} s")
    finally:
        idle.cancel()
        stop.set()
        await asyncio.wait_for(running, within_s)
    return pusher


# --- a snapshot of the tables, read once --------------------------------------------------------


@dataclass(frozen=True)
class LineRow:
    """An order line as stored, with what the checks need of its order."""

    order_id: int
    external_line_id: str
    sku: str | None
    quantity: int
    cancelled: int
    shipped: int


@dataclass(frozen=True)
class OrderRow:
    """An order as stored, without its lines."""

    id: int
    channel_id: int
    external_id: str
    updated_at: datetime
    status: OrderStatus
    is_reserving: bool
    is_oversold: bool


@dataclass(frozen=True)
class ReservationRow:
    """One reservation row and the order it belongs to."""

    order_id: int
    sku: str
    location: str
    reserved: int
    consumed: int


@dataclass
class Snapshot:
    """The tables the oracle and the invariants read, each read once, in one transaction."""

    on_hand: dict[tuple[str, str], int]
    parts: dict[str, dict[str, int]]  # bundle -> component -> units per bundle
    orders: dict[int, OrderRow]
    lines: list[LineRow]
    reservations: list[ReservationRow]
    listings: list[tuple[int, str, str]]  # channel id, external ref, sku

    @classmethod
    def read(cls, session: Session) -> Snapshot:
        """Read every table the checks need."""
        parts: dict[str, dict[str, int]] = defaultdict(dict)
        for bundle, component, units in session.execute(
            select(
                BundleComponent.bundle_sku, BundleComponent.component_sku, BundleComponent.quantity
            )
        ):
            parts[bundle][component] = units
        return cls(
            on_hand={
                (sku, location): on_hand
                for sku, location, on_hand in session.execute(
                    select(StockLevel.sku, StockLevel.location, StockLevel.on_hand)
                )
            },
            parts=dict(parts),
            orders={
                row[0]: OrderRow(*row)
                for row in session.execute(
                    select(
                        Order.id,
                        Order.channel_id,
                        Order.external_id,
                        Order.channel_updated_at,
                        Order.status,
                        Order.is_reserving,
                        Order.is_oversold,
                    )
                )
            },
            lines=[
                LineRow(*row)
                for row in session.execute(
                    select(
                        OrderLine.order_id,
                        OrderLine.external_line_id,
                        OrderLine.sku,
                        OrderLine.quantity,
                        OrderLine.quantity_cancelled,
                        OrderLine.quantity_shipped,
                    )
                )
            ],
            reservations=[
                ReservationRow(*row)
                for row in session.execute(
                    select(
                        OrderLine.order_id,
                        Reservation.sku,
                        Reservation.location,
                        Reservation.reserved,
                        Reservation.consumed,
                    ).join(OrderLine, OrderLine.id == Reservation.order_line_id)
                )
            ],
            listings=[
                (channel_id, ref, sku)
                for channel_id, ref, sku in session.execute(
                    select(Listing.channel_id, Listing.external_ref, Listing.sku)
                )
            ],
        )

    def available(self) -> dict[tuple[str, str], int]:
        """(sku, location) -> on hand minus the units reserved there."""
        available: dict[tuple[str, str], int] = defaultdict(int, self.on_hand)
        for res in self.reservations:
            available[(res.sku, res.location)] -= res.reserved
        return dict(available)


# --- the oracle: what every channel should show, from the tables alone --------------------------


def apply_rules(rules: StockRules, available: int) -> int:
    """The channel quantity for `available` units, written out again from the design."""
    shown = max(0, available - rules.buffer)
    shown = shown * rules.percent // 100
    if rules.max_shown is not None and shown > rules.max_shown:
        shown = rules.max_shown
    return 0 if shown <= rules.zero_at_or_below else shown


def expected_channel_quantities(session: Session, store: Store) -> dict[str, dict[str, int]]:
    """channel -> listing ref -> the quantity the rules give for the ledger now.

    Per location available = on hand - reserved; a channel sells the sum over its locations of
    what is not negative there; a bundle, the fewest whole bundles its components make.
    """
    snapshot = Snapshot.read(session)
    available = snapshot.available()
    by_id = {c.id: c for c in store.channels.values()}
    expected: dict[str, dict[str, int]] = {c: {} for c in store.channels}

    def units(sku: str, locations: Iterable[str]) -> int:
        return sum(max(0, available.get((sku, loc), 0)) for loc in locations)

    for channel_id, ref, sku in snapshot.listings:
        channel = by_id[channel_id]
        locations = channel.spec.locations
        if sku in snapshot.parts:
            sellable = min(units(c, locations) // per for c, per in snapshot.parts[sku].items())
        else:
            sellable = units(sku, locations)
        expected[channel.name][ref] = apply_rules(channel.spec.rules, sellable)
    return expected


# --- invariants ---------------------------------------------------------------------------------


def live_units_by_sku(snapshot: Snapshot) -> dict[str, int]:
    """sku -> units of live order lines (bundles expanded): what reserved + consumed must equal.

    A line counts quantity - cancelled; a cancelled order counts only what it shipped; an order
    that reserves nothing (FBA) and a line with no SKU of ours count nothing.
    """
    live: dict[str, int] = defaultdict(int)
    for line in snapshot.lines:
        order = snapshot.orders[line.order_id]
        if line.sku is None or not order.is_reserving:
            continue
        if order.status == OrderStatus.CANCELLED:
            units = line.shipped
        else:
            units = line.quantity - line.cancelled
        for component, per in (snapshot.parts.get(line.sku) or {line.sku: 1}).items():
            live[component] += units * per
    return {sku: units for sku, units in live.items() if units}


def ledger_by_sku(snapshot: Snapshot) -> dict[str, int]:
    """sku -> reserved + consumed over every reservation row."""
    totals: dict[str, int] = defaultdict(int)
    for res in snapshot.reservations:
        totals[res.sku] += res.reserved + res.consumed
    return {sku: units for sku, units in totals.items() if units}


def check_ledger_matches_lines(snapshot: Snapshot) -> None:
    """Invariant 3, first half: reserved + consumed equals the live order lines, per SKU."""
    assert ledger_by_sku(snapshot) == live_units_by_sku(snapshot)


def oversold_flag_problems(snapshot: Snapshot) -> list[str]:
    """Invariant 3, second half, as the places it fails: negative available only with an
    oversold order holding it; no order flagged while every place it reserves is covered."""
    available = snapshot.available()
    holders: dict[tuple[str, str], set[int]] = defaultdict(set)
    reserves: dict[int, set[tuple[str, str]]] = defaultdict(set)
    for res in snapshot.reservations:
        if res.reserved > 0:
            holders[(res.sku, res.location)].add(res.order_id)
            reserves[res.order_id].add((res.sku, res.location))
    flagged = {order.id for order in snapshot.orders.values() if order.is_oversold}
    problems = [
        f"{place} is at {units} but no order holding it is flagged oversold"
        for place, units in available.items()
        if units < 0 and not holders[place] & flagged
    ]
    for order_id in flagged:
        places = reserves.get(order_id, set())
        if not any(available.get(p, 0) < 0 for p in places):
            problems.append(
                f"order {order_id} is flagged oversold but every place it reserves is covered: "
                f"{ {p: available.get(p, 0) for p in places} }"
            )
    return problems


def check_oversold_flags(snapshot: Snapshot) -> None:
    """Invariant 3, second half (see `oversold_flag_problems`)."""
    problems = oversold_flag_problems(snapshot)
    assert not problems, "\n".join(problems)


def check_orders_stored_once(
    snapshot: Snapshot, store: Store, newest: Mapping[tuple[str, str], ChannelOrder]
) -> None:
    """Invariant 1: every (channel, external id) delivered is stored once, with the state of the
    newest version delivered (`newest`: what the test delivered, by channel name and id)."""
    names = {c.id: name for name, c in store.channels.items()}
    stored: dict[tuple[str, str], OrderRow] = {}
    for order in snapshot.orders.values():
        key = (names[order.channel_id], order.external_id)
        assert key not in stored, f"order {key} is stored twice"
        stored[key] = order
    assert sorted(stored) == sorted(newest), "the stored orders are not the delivered ones"
    lines: dict[int, dict[str, tuple[int, int, int]]] = defaultdict(dict)
    for line in snapshot.lines:
        lines[line.order_id][line.external_line_id] = (line.quantity, line.cancelled, line.shipped)
    for key, order in newest.items():
        row = stored[key]
        assert (row.updated_at, row.status) == (order.updated_at, order.status), (
            f"order {key} is stored at {row.updated_at} {row.status}, "
            f"the newest delivered is {order.updated_at} {order.status}"
        )
        assert lines[row.id] == {
            line.external_line_id: (line.quantity, line.quantity_cancelled, line.quantity_shipped)
            for line in order.lines
        }, f"order {key}: stored lines differ from the newest version delivered"


def check_invariants(
    session: Session, store: Store, newest: Mapping[tuple[str, str], ChannelOrder]
) -> None:
    """Invariants 1 and 3, read from the tables in one snapshot."""
    snapshot = Snapshot.read(session)
    check_orders_stored_once(snapshot, store, newest)
    check_ledger_matches_lines(snapshot)
    check_oversold_flags(snapshot)


def channel_stock(store: Store) -> dict[str, dict[str, int]]:
    """channel -> listing ref -> what the marketplace shows now, for every listed SKU."""
    return {
        name: {sku: channel.market.stock_of(sku) for sku in store.all_skus}
        for name, channel in store.channels.items()
    }
