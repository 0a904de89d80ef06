"""Stock push under an order burst: API calls against the lower bound, and time to converge.

A burst of orders over many SKUs on three reference channels whose batch maxima are those of
Shopify (250 inventory items per `inventorySetQuantities`, compare-and-swap), eBay Trading (4 per
`ReviseInventoryStatus`) and Amazon (1 per `patchListingsItem`). Each order is placed on its
marketplace (which lowers its own stock, as a real one does) and then ingested in its own
transaction, as a webhook stream delivers them (`--page N` groups N orders per transaction, as a
poll page would), while the stock pusher runs in the same process and is woken after each commit.

Printed per channel: push_stock calls made during the burst; the lower bound (listings whose final
quantity differs from the one before the burst, divided by the batch maximum, rounded up); their
ratio; the time from the last order's commit until the channel holds its final quantities; and
whether every listing ends at what the rules give for the final ledger.

    .venv/bin/python bench/push.py [--orders 10000] [--skus 1000] [--latency 0.02] [--seed 1]
                                   [--page 1] [--db-url postgresql://USER@HOST:PORT/DB]

With `--db-url` naming a PostgreSQL server, a fresh database is created beside the named one for
the run and dropped afterwards. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.engine import make_url

from connectors.base import Capabilities, PushOutcome, StockPushResult, StockTarget
from connectors.memory import MemoryConnector, MemoryMarketplace
from sync.db import Database, sqlite_url, upgrade
from sync.ingest import ChannelRef, ingest_orders
from sync.models import Channel, Listing, OutboxJob, Sku, StockLevel
from sync.pusher import PushChannel, StockPusher
from sync.reservations import StockRules, channel_available
from sync.stock_push import ChannelStockPlan

LOCATIONS = ("default",)
# name -> capabilities of the reference channel
REFERENCE = {
    "shopify-like": Capabilities(
        max_stock_batch=250, supports_compare_and_swap=True, max_in_flight=4
    ),
    "ebay-like": Capabilities(max_stock_batch=4, max_in_flight=4),
    # patchListingsItem: 5 requests/s, burst 5
    "amazon-like": Capabilities(max_stock_batch=1, max_in_flight=5),
}


class TimedConnector:
    """Passes every call to the memory connector; records when each listing value was applied."""

    def __init__(self, inner: MemoryConnector) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.applied_at: dict[str, tuple[float, int]] = {}

    def __getattr__(self, item: str) -> Any:
        return getattr(self.inner, item)

    async def push_stock(self, targets: Sequence[StockTarget]) -> Sequence[StockPushResult]:
        results = await self.inner.push_stock(targets)
        now = time.monotonic()  # the marketplace applies at the end of the call
        wanted = {t.listing_ref: t.quantity for t in targets}
        for result in results:
            if result.outcome == PushOutcome.APPLIED:
                self.applied_at[result.listing_ref] = (now, wanted[result.listing_ref])
        return results


@contextmanager
def store(db_url: str | None) -> Iterator[tuple[Database, str]]:
    """A fresh, migrated store: SQLite in a temp dir, or a new database on a PostgreSQL server."""
    if not db_url:
        with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
            db = Database(sqlite_url(Path(tmp) / "store.db"))
            try:
                upgrade(db)
                yield db, "sqlite"
            finally:
                db.dispose()
        return
    import psycopg  # only needed for PostgreSQL

    url = make_url(db_url)
    name = f"bench_push_{uuid.uuid4().hex[:10]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db = Database(url.set(database=name).render_as_string(hide_password=False))
    try:
        upgrade(db)
        yield db, "postgresql"
    finally:
        db.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed_store(db: Database, skus: list[str], on_hand: Mapping[str, int]) -> dict[str, int]:
    """Channels, SKUs, stock and one listing per SKU per channel (dirty on creation)."""
    with db.session() as s:
        channels = {name: Channel(name=name, kind="memory") for name in REFERENCE}
        s.add_all(channels.values())
        s.flush()
        s.add_all(Sku(sku=sku) for sku in skus)
        s.flush()
        s.add_all(StockLevel(sku=sku, location=LOCATIONS[0], on_hand=on_hand[sku]) for sku in skus)
        for channel in channels.values():
            s.add_all(Listing(channel_id=channel.id, sku=sku, external_ref=sku) for sku in skus)
        return {name: channel.id for name, channel in channels.items()}


def expected_quantities(db: Database, skus: list[str]) -> dict[str, int]:
    """What the default rules give for the final ledger (on hand - reserved, floored at 0)."""
    with db.read_session() as s:
        available = channel_available(s, skus, LOCATIONS)
    return {sku: StockRules().apply(available.get(sku, 0)) for sku in skus}


def make_orders(
    rng: random.Random, n: int, skus: list[str], channels: list[str]
) -> list[tuple[str, list[tuple[str, int]]]]:
    """(channel, [(listing_ref, quantity), ...]) per order: 1-3 lines over distinct random SKUs."""
    orders = []
    for _ in range(n):
        lines = rng.sample(skus, rng.randint(1, 3))
        orders.append((rng.choice(channels), [(sku, rng.choice((1, 1, 1, 2))) for sku in lines]))
    return orders


async def settle(pusher: StockPusher, runner: asyncio.Task[None], limit_s: float) -> None:
    """Wait until the pusher is idle; fail fast if its task died, or after `limit_s` seconds."""
    idle = asyncio.create_task(pusher.wait_idle())
    done, _ = await asyncio.wait(
        {idle, runner}, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED
    )
    if idle in done:
        idle.result()
        return
    idle.cancel()
    if runner in done:
        runner.result()  # raises the pusher's own error
        raise RuntimeError("the stock pusher stopped on its own")
    raise TimeoutError(f"the stock pusher was not idle after {limit_s} s")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    skus = [f"SKU-{i:05d}" for i in range(args.skus)]
    on_hand = {sku: rng.randint(5, 50) for sku in skus}
    names = list(REFERENCE)
    orders = make_orders(rng, args.orders, skus, names)

    with store(args.db_url) as (db, dialect):
        channel_ids = seed_store(db, skus, on_hand)
        markets: dict[str, MemoryMarketplace] = {}
        connectors: dict[str, TimedConnector] = {}
        for i, name in enumerate(names):
            market = MemoryMarketplace(rng=random.Random(args.seed * 100 + i))
            for sku in skus:
                market.set_stock(sku, on_hand[sku])  # the seller's listings already exist
            market.faults.latency = args.latency
            market.faults.max_in_flight = REFERENCE[name].max_in_flight
            markets[name] = market
            connectors[name] = TimedConnector(
                MemoryConnector(market, name=name, capabilities=REFERENCE[name])
            )
        pusher = StockPusher(
            db,
            [
                PushChannel(
                    name,
                    connectors[name],
                    ChannelStockPlan(channel_ids[name], StockRules(), LOCATIONS),
                )
                for name in names
            ],
        )
        stop = asyncio.Event()
        runner = asyncio.create_task(pusher.run(stop))
        try:
            # Initial quantities: every listing is dirty at creation.
            t0 = time.monotonic()
            pusher.wake()
            await settle(pusher, runner, args.timeout)
            initial_s = time.monotonic() - t0
            before = {name: market.snapshot() for name, market in markets.items()}
            for market in markets.values():
                market.calls.clear()
                market.throttled.clear()
                market.batch_sizes.clear()
                market.max_in_flight_seen = 0
            for conn in connectors.values():
                conn.applied_at.clear()
            summary_before = dict(vars(pusher.summary))

            # The burst: place on the marketplace, then ingest as its webhook arrives.
            refs = {
                name: ChannelRef(
                    channel_ids[name],
                    name,
                    LOCATIONS,
                    compare_and_swap=REFERENCE[name].supports_compare_and_swap,
                )
                for name in names
            }

            def ingest(batch: list[tuple[str, Any]]) -> None:
                with db.session() as s:
                    by_channel: dict[str, list[Any]] = {}
                    for name, order in batch:
                        by_channel.setdefault(name, []).append(order)
                    for name, placed in by_channel.items():
                        ingest_orders(s, refs[name], placed)

            burst_start = time.monotonic()
            last_commit = burst_start
            for start in range(0, len(orders), args.page):
                page = [
                    (name, markets[name].place_order(lines))
                    for name, lines in orders[start : start + args.page]
                ]
                await asyncio.to_thread(ingest, page)
                if runner.done():
                    runner.result()
                    raise RuntimeError("the stock pusher stopped on its own")
                last_commit = time.monotonic()
                pusher.wake()
            burst_s = last_commit - burst_start
            calls_at_last_commit = {n: m.calls["push_stock"] for n, m in markets.items()}

            await settle(pusher, runner, args.timeout)
            idle_s = time.monotonic() - last_commit
        finally:
            stop.set()
            if not runner.done():
                await runner

        expected = expected_quantities(db, skus)
        with db.read_session() as s:
            jobs_total = len(s.scalars(select(OutboxJob.id)).all())
        result: dict[str, Any] = {}
        for name in names:
            market = markets[name]
            caps = REFERENCE[name]
            final = market.snapshot()
            changed = sum(1 for sku in skus if final.get(sku) != before[name].get(sku))
            lower_bound = math.ceil(changed / caps.max_stock_batch)
            calls = market.calls["push_stock"]
            wrong = [sku for sku in skus if final.get(sku) != expected[sku]]
            times = [t for t, _q in connectors[name].applied_at.values()]
            converge = max(0.0, max(times, default=last_commit) - last_commit)
            sizes = market.batch_sizes
            result[name] = {
                "calls": calls,
                "lower_bound": lower_bound,
                "ratio": round(calls / lower_bound, 2) if lower_bound else None,
                "converge_s": round(converge, 3),
                "correct": not wrong,
                "wrong_listings": len(wrong),
                "wrong_sum": sum(expected[s] - final.get(s, 0) for s in wrong),
                "changed_listings": changed,
                "calls_before_last_commit": calls_at_last_commit[name],
                "mean_batch": round(sum(sizes) / len(sizes), 2) if sizes else 0,
                "throttled": market.throttled["push_stock"],
                "max_in_flight_seen": market.max_in_flight_seen,
            }
        summary = {k: v - summary_before[k] for k, v in vars(pusher.summary).items()}
        return {
            "channels": result,
            "orders": args.orders,
            "skus": args.skus,
            "cores": os.cpu_count(),
            "db": dialect,
            "page": args.page,
            "latency_s": args.latency,
            "initial_push_s": round(initial_s, 3),
            "burst_s": round(burst_s, 3),
            "orders_per_s": round(args.orders / burst_s, 1) if burst_s else None,
            "idle_after_last_commit_s": round(idle_s, 3),
            "push_outcomes": summary,
            "outbox_jobs_total": jobs_total,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--skus", type=int, default=1_000)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per channel call")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--page", type=int, default=50, help="orders per ingest transaction (1: one per webhook)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for idle")
    parser.add_argument("--db-url", default=None, help="PostgreSQL server (a fresh db is made)")
    args = parser.parse_args()

    started = time.monotonic()
    figures = asyncio.run(run(args))
    figures["runtime_s"] = round(time.monotonic() - started, 1)

    console = Console(width=max(150, Console().width))
    table = Table(
        title=(
            f"stock push: {args.orders} orders over {args.skus} SKUs, {args.page} per transaction, "
            f"{figures['db']}, {args.latency * 1000:.0f} ms calls"
        )
    )
    for column in (
        "channel",
        "batch max",
        "calls",
        "lower bound",
        "ratio",
        "calls by last commit",
        "mean batch",
        "throttled",
        "converge s",
        "correct",
    ):
        table.add_column(column, justify="right")
    for name, row in figures["channels"].items():
        table.add_row(
            name,
            str(REFERENCE[name].max_stock_batch),
            str(row["calls"]),
            str(row["lower_bound"]),
            f"{row['ratio']:.2f}" if row["ratio"] is not None else "-",
            str(row["calls_before_last_commit"]),
            f"{row['mean_batch']:.1f}",
            str(row["throttled"]),
            f"{row['converge_s']:.3f}",
            "yes" if row["correct"] else f"no ({row['wrong_listings']} listings)",
        )
    console.print(table)
    console.print(
        f"burst {figures['burst_s']:.1f} s ({figures['orders_per_s']} orders/s), idle "
        f"{figures['idle_after_last_commit_s']:.2f} s after the last commit, push outcomes "
        f"{figures['push_outcomes']}, runtime {figures['runtime_s']} s on {figures['cores']} cores"
    )
    correct = all(row["correct"] for row in figures["channels"].values())
    target = all((row["ratio"] or 0) <= 1.5 for row in figures["channels"].values())
    print(f"correct: {'yes' if correct else 'no'}")
    print(f"ratio target (<= 1.5): {'met' if target else 'missed'}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
