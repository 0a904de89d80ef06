"""Stock push under an order burst: API calls against the lower bound, and time to converge.

A burst of orders over many SKUs on three reference channels whose batch maxima are those of
Shopify (250 inventory items per `inventorySetQuantities`, compare-and-swap), eBay Trading (4 per
`ReviseInventoryStatus`) and Amazon (1 per `patchListingsItem`). Each order is placed on its
marketplace (which lowers its own stock, as a real one does) and then ingested in its own
transaction, as a webhook stream delivers them (`--page N` groups N orders per transaction, as a
poll page would), while the stock pusher runs in the same process and is woken after each commit.

Printed per channel: push_stock calls made during the burst; the lower bound (listings whose final
quantity differs from the one before the burst, divided by the batch maximum, rounded up); their
ratio; the time from the last order's commit until the channel holds its final quantities; how
stale the channel was during the burst (per stock job pushed: from the first change it carries
being planned until its push was recorded, median, 99th percentile and worst); whether every
listing ends at what the rules give for the final ledger; and, once all is quiet, how long one
lone sale takes to reach each channel.

    .venv/bin/python bench/push.py [--orders 10000] [--skus 1000] [--latency 0.02] [--seed 1]
                                   [--page 50] [--db-url postgresql://USER@HOST:PORT/DB]
                                   [--linger-ms MS] [--quiet-ms MS] [--stream-gap-ms MS]
                                   [--hold-full] [--economy]

The coalescing flags override the defaults (`Coalescing.for_capabilities`) of the batching
channels (batch maximum above 1), to measure what a longer linger trades for fewer calls.

With `--db-url` naming a PostgreSQL server, a fresh database is created beside the named one for
the run and dropped afterwards. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from connectors.base import Capabilities, PushOutcome, StockPushResult, StockTarget
from connectors.memory import MemoryConnector, MemoryMarketplace
from sync.db import Database, sqlite_url, upgrade
from sync.ingest import ChannelRef, ingest_orders
from sync.models import Channel, JobKind, JobState, Listing, OutboxJob, Sku, StockLevel
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


def coalescing(args: argparse.Namespace, capabilities: Capabilities) -> Any:
    """The batching channels' coalescing with the flags' overrides; None keeps the default."""
    overrides = {
        "quiet_s": None if args.quiet_ms is None else args.quiet_ms / 1000,
        "stream_gap_s": None if args.stream_gap_ms is None else args.stream_gap_ms / 1000,
        "max_linger_s": None if args.linger_ms is None else args.linger_ms / 1000,
        "hold_full": True if args.hold_full else None,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given or capabilities.max_stock_batch <= 1:
        return None
    from sync.push_policy import Coalescing

    return dataclasses.replace(Coalescing.for_capabilities(capabilities), **given)


def push_channel(
    args: argparse.Namespace, name: str, connector: TimedConnector, channel_id: int
) -> PushChannel:
    """The channel as the pusher serves it, with the coalescing the flags ask for."""
    plan = ChannelStockPlan(channel_id, StockRules(), LOCATIONS)
    policy = coalescing(args, REFERENCE[name])
    if policy is None:
        return PushChannel(name, connector, plan)
    return PushChannel(name, connector, plan, coalescing=policy)


def staleness(db: Database, channel_id: int, after_job: int) -> dict[str, float | None]:
    """Per stock job pushed since `after_job`: from its first planned change to its recorded
    push (a replaced pending job keeps its creation time), as median, p99 and worst."""
    with db.read_session() as s:
        rows = s.execute(
            select(OutboxJob.created_at, OutboxJob.updated_at).where(
                OutboxJob.id > after_job,
                OutboxJob.channel_id == channel_id,
                OutboxJob.kind == JobKind.STOCK,
                OutboxJob.state == JobState.DONE,
                OutboxJob.last_error.is_(None),
            )
        ).all()
    lags = sorted((done - created).total_seconds() for created, done in rows)
    if not lags:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(lags[len(lags) // 2], 3),
        "p99": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 3),
        "max": round(lags[-1], 3),
    }


async def lone_sale(
    db: Database,
    refs: Mapping[str, ChannelRef],
    markets: Mapping[str, MemoryMarketplace],
    connectors: Mapping[str, TimedConnector],
    pusher: StockPusher,
    sku: str,
    limit_s: float = 10.0,
) -> dict[str, float | None]:
    """One sale of one unit after everything is quiet: seconds from its commit until each
    channel applied the new quantity (None: not within `limit_s`)."""
    name = list(markets)[-1]  # a plain channel: every channel then needs a push
    order = markets[name].place_order([(sku, 1)])
    await asyncio.to_thread(db.transact, lambda s: ingest_orders(s, refs[name], [order]))
    committed = time.monotonic()
    pusher.wake()
    wanted = expected_quantities(db, [sku])[sku]
    reached: dict[str, float | None] = dict.fromkeys(markets)
    while time.monotonic() - committed < limit_s and None in reached.values():
        for channel, conn in connectors.items():
            applied = conn.applied_at.get(sku)
            if reached[channel] is None and applied and applied[1] == wanted:
                reached[channel] = round(applied[0] - committed, 3)
        await asyncio.sleep(0.001)
    return reached


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
            [push_channel(args, name, connectors[name], channel_ids[name]) for name in names],
        )
        stop = asyncio.Event()
        runner = asyncio.create_task(pusher.run(stop))
        try:
            # Initial quantities: every listing is dirty at creation.
            t0 = time.monotonic()
            pusher.wake()
            await settle(pusher, runner, args.timeout)
            initial_s = time.monotonic() - t0
            if dialect == "postgresql":
                # A store in service has statistics (autovacuum analyzes it); this one was just
                # filled. Without them the planner picks nested loops over the job table.
                with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    c.exec_driver_sql("VACUUM ANALYZE")
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
                def write(s: Any) -> None:
                    by_channel: dict[str, list[Any]] = {}
                    for name, order in batch:
                        by_channel.setdefault(name, []).append(order)
                    for name, placed in by_channel.items():
                        ingest_orders(s, refs[name], placed)

                # As the daemon's writers do: run again whole on a deadlock (PostgreSQL).
                db.transact(write)

            with db.read_session() as s:
                jobs_before = int(s.scalar(select(func.max(OutboxJob.id))) or 0)

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
            stale = {name: staleness(db, channel_ids[name], jobs_before) for name in names}
            calls_before_lone = {n: m.calls["push_stock"] for n, m in markets.items()}
            after_burst = {name: market.snapshot() for name, market in markets.items()}
            last_applied = {
                name: max((t for t, _q in conn.applied_at.values()), default=last_commit)
                for name, conn in connectors.items()
            }
            in_stock = [sku for sku, q in expected_quantities(db, skus).items() if q > 0]
            lone = await lone_sale(db, refs, markets, connectors, pusher, in_stock[0])
            await settle(pusher, runner, args.timeout)
        finally:
            stop.set()
            if not runner.done():
                await runner

        expected = expected_quantities(db, skus)
        with db.read_session() as s:
            jobs_total = len(s.scalars(select(OutboxJob.id)).all())
            deadlocks = autovacuum = None
            if dialect == "postgresql":
                deadlocks = s.scalar(
                    text(
                        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
                    )
                )
                autovacuum = s.scalar(text("SHOW autovacuum"))
        result: dict[str, Any] = {}
        for name in names:
            market = markets[name]
            caps = REFERENCE[name]
            final = market.snapshot()
            changed = sum(1 for sku in skus if after_burst[name].get(sku) != before[name].get(sku))
            lower_bound = math.ceil(changed / caps.max_stock_batch)
            calls = calls_before_lone[name]
            wrong = [sku for sku in skus if final.get(sku) != expected[sku]]
            converge = max(0.0, last_applied[name] - last_commit)
            sizes = market.batch_sizes[:calls]
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
                "stale_p50_s": stale[name]["p50"],
                "stale_p99_s": stale[name]["p99"],
                "stale_max_s": stale[name]["max"],
                "lone_sale_s": lone[name],
                "coalescing": (
                    dataclasses.asdict(policy)
                    if (policy := coalescing(args, caps)) is not None
                    else "default"
                ),
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
            "deadlocks": deadlocks,
            "autovacuum": autovacuum,
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
    parser.add_argument("--linger-ms", type=float, default=None, help="batching: max linger")
    parser.add_argument("--quiet-ms", type=float, default=None, help="batching: lone-change wait")
    parser.add_argument(
        "--stream-gap-ms", type=float, default=None, help="batching: changes closer are a stream"
    )
    parser.add_argument(
        "--hold-full", action="store_true", help="batching: full batches linger too"
    )
    parser.add_argument(
        "--economy",
        action="store_true",
        help=(
            "batching channels as a channel file's [push] max_linger_s = 120, pause_s = 10, "
            "hold_full = true: fewest calls, stale for the burst"
        ),
    )
    args = parser.parse_args()
    if args.economy:
        args.linger_ms = args.linger_ms or 120_000.0
        args.stream_gap_ms = args.stream_gap_ms or 10_000.0
        args.hold_full = True

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
        "stale p50/p99/max s",
        "lone sale s",
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
            f"{row['stale_p50_s']}/{row['stale_p99_s']}/{row['stale_max_s']}",
            str(row["lone_sale_s"]),
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
