"""Ingest throughput: canonical orders per second through ingest + reserve + mark dirty, beside a
bare SQLAlchemy insert of the same rows.

Two transaction shapes, as orders arrive: (a) poll pages of 250 orders per transaction, (b) one
order per transaction, as webhooks deliver them. Each is measured on SQLite and PostgreSQL, and
beside it, in the same run, a bare insert: the same `orders` and `order_lines` rows written with
the ORM (`session.add_all`) in the same transaction shape, through the same `Database` (SQLite:
WAL, `synchronous=FULL`; PostgreSQL: its defaults, fsync on). The two take turns transaction by
transaction, each in its own fresh, migrated store, so that whatever else runs on the machine
weighs on both alike. Every store starts holding the same catalogue: 1,000 SKUs, each listed on
three channels (the listing that was last pushed the on-hand figure, as in steady state, so
ingest lowers what each channel is believed to hold and marks the listings dirty), about two
lines per order. The stock pusher does
not run: what it would do with the dirty listings is `bench/push.py`'s subject.

Target: ingest at least half the bare insert rate, in both shapes, on both databases.

    .venv/bin/python bench/ingest.py [--pages-orders 5000] [--per-order-orders 1000]
                                     [--page-size 250] [--skus 1000] [--seed 1]
                                     [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]
                                     [--no-sqlite] [--no-postgresql]

PostgreSQL: a fresh database is created beside the one named by `--pg-url` (default: env
`CHANNEL_SYNC_BENCH_PG_URL`, else postgresql://postgres@127.0.0.1:5432/postgres) for each run and
dropped afterwards; when the server cannot be reached the PostgreSQL rows are skipped with a note.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from connectors.base import Address, Money, Order, OrderLine, OrderStatus
from sync.db import Database, sqlite_url, upgrade
from sync.ingest import ChannelRef, ingest_orders
from sync.models import Channel, Listing, Sku, StockLevel
from sync.models import Order as OrderRow
from sync.models import OrderLine as OrderLineRow

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CHANNELS = ("shopify-main", "amazon-us", "ebay-uk")
LOCATIONS = ("default",)
TARGET_RATIO = 0.5
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class Workload:
    """The catalogue and the orders, the same for the ingest run and the bare insert beside it."""

    skus: list[str]
    on_hand: dict[str, int]
    orders: list[tuple[str, Order]]  # (channel name, canonical order)

    @property
    def lines(self) -> int:
        """Order lines in the workload."""
        return sum(len(order.lines) for _, order in self.orders)


def make_workload(rng: random.Random, n_orders: int, n_skus: int, prefix: str) -> Workload:
    """`n_orders` open orders, 1-3 lines (2 on average) over distinct random SKUs each."""
    skus = [f"SKU-{i:05d}" for i in range(n_skus)]
    on_hand = {sku: rng.randint(10, 100) for sku in skus}
    orders = []
    for i in range(n_orders):
        channel = CHANNELS[i % len(CHANNELS)]
        at = T0 + timedelta(seconds=i)
        lines = [
            OrderLine(
                external_line_id=f"{prefix}{i}-{n}",
                sku=sku,
                quantity=rng.choice((1, 1, 1, 2)),
                unit_price=Money(Decimal(rng.randint(199, 9999)) / 100, "USD"),
            )
            for n, sku in enumerate(rng.sample(skus, rng.randint(1, 3)), start=1)
        ]
        total = sum(
            (line.unit_price.amount * line.quantity for line in lines if line.unit_price),
            Decimal(0),
        )
        orders.append(
            (
                channel,
                Order(
                    external_id=f"{prefix}{i}",
                    number=f"#{prefix}{i}",
                    status=OrderStatus.OPEN,
                    currency="USD",
                    updated_at=at,
                    created_at=at,
                    lines=lines,
                    total=Money(total, "USD"),
                    ship_to=Address(
                        name="A Buyer",
                        line1=f"{i} Main Street",
                        city="Springfield",
                        postal_code="12345",
                        country_code="US",
                    ),
                    buyer_ref=f"buyer-{rng.randint(1, n_orders)}",
                ),
            )
        )
    return Workload(skus, on_hand, orders)


# --- stores -------------------------------------------------------------------------------------


@contextmanager
def fresh_store(dialect: str, pg_url: str) -> Iterator[Database]:
    """A new, migrated, empty store: a SQLite file in a temp dir or a new PostgreSQL database."""
    if dialect == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
            db = Database(sqlite_url(Path(tmp) / "store.db"))
            try:
                upgrade(db)
                yield db
            finally:
                db.dispose()
        return
    url = make_url(pg_url)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"bench_ingest_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db = Database(url.set(database=name).render_as_string(hide_password=False))
    try:
        upgrade(db)
        yield db
    finally:
        db.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgresql_problem(pg_url: str) -> str | None:
    """Why PostgreSQL cannot be benchmarked at `pg_url`, or None when it can."""
    try:
        admin = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True, connect_timeout=5):
            return None
    except Exception as exc:  # any failure to connect means: skip PostgreSQL, say why
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {first}"


def seed_catalogue(db: Database, workload: Workload) -> dict[str, ChannelRef]:
    """Channels, SKUs, stock, and a listing per SKU per channel, last pushed the on-hand figure."""
    with db.session() as session:
        channels = [Channel(name=name, kind="memory") for name in CHANNELS]
        session.add_all(channels)
        session.add_all(Sku(sku=sku) for sku in workload.skus)
        session.flush()
        session.add_all(
            StockLevel(sku=sku, location=LOCATIONS[0], on_hand=units)
            for sku, units in workload.on_hand.items()
        )
        session.add_all(
            Listing(
                channel_id=channel.id,
                sku=sku,
                external_ref=f"{channel.name}:{sku}",
                is_dirty=False,
                last_pushed_quantity=workload.on_hand[sku],
                last_pushed_at=T0,
            )
            for channel in channels
            for sku in workload.skus
        )
        session.flush()
        return {c.name: ChannelRef(c.id, c.name, LOCATIONS) for c in channels}


# --- the two writers ----------------------------------------------------------------------------


class Writer(Protocol):
    """Writes one transaction's orders of one channel in the caller's session."""

    def __call__(self, session: Session, channel: str, orders: Sequence[Order]) -> object: ...


def transactions(workload: Workload, page_size: int) -> list[tuple[str, Sequence[Order]]]:
    """The workload cut into transactions: pages of one channel's orders, or single orders."""
    if page_size == 1:
        return [(channel, [order]) for channel, order in workload.orders]
    pages: list[tuple[str, Sequence[Order]]] = []
    for channel in CHANNELS:
        mine = [order for name, order in workload.orders if name == channel]
        pages += [(channel, mine[i : i + page_size]) for i in range(0, len(mine), page_size)]
    return pages


def ingest_writer(refs: dict[str, ChannelRef]) -> Writer:
    """The real path: upsert, reserve, re-derive oversold flags, mark listings dirty."""

    def write(session: Session, channel: str, orders: Sequence[Order]) -> object:
        return ingest_orders(session, refs[channel], orders)

    return write


def bare_writer(refs: dict[str, ChannelRef]) -> Writer:
    """The floor: the same order and line rows, added with the ORM, nothing read, nothing else."""

    def write(session: Session, channel: str, orders: Sequence[Order]) -> None:
        channel_id = refs[channel].id
        session.add_all(
            OrderRow(
                channel_id=channel_id,
                external_id=order.external_id,
                number=order.number,
                status=order.status,
                currency=order.currency,
                total=order.total.amount if order.total else None,
                is_reserving=order.is_reserving,
                ship_to=dataclasses.asdict(order.ship_to) if order.ship_to else None,
                buyer_ref=order.buyer_ref,
                channel_created_at=order.created_at,
                channel_updated_at=order.updated_at,
                lines=[
                    OrderLineRow(
                        external_line_id=line.external_line_id,
                        channel_sku=line.sku,
                        sku=line.sku,
                        quantity=line.quantity,
                        quantity_cancelled=line.quantity_cancelled,
                        quantity_shipped=line.quantity_shipped,
                        unit_price=line.unit_price.amount if line.unit_price else None,
                        extra=dict(line.extra) or None,
                    )
                    for line in order.lines
                ],
            )
            for order in orders
        )

    return write


@dataclasses.dataclass
class _Run:
    """One writer's fresh store, and what writing into it cost so far."""

    db: Database
    write: Writer
    seconds: float = 0.0
    statements: int = 0

    def count(self, *_args: Any) -> None:
        """`before_cursor_execute` listener: one more round trip served."""
        self.statements += 1

    def held(self) -> dict[str, int]:
        """What the store holds after the run, and the statements it took."""
        with self.db.read_session() as session:
            return {
                "statements": self.statements,
                "orders": session.scalar(select(func.count()).select_from(OrderRow)) or 0,
                "lines": session.scalar(select(func.count()).select_from(OrderLineRow)) or 0,
                "dirty_listings": session.scalar(
                    select(func.count()).where(Listing.is_dirty.is_(True))
                )
                or 0,
            }


def timed_runs(
    dialect: str,
    pg_url: str,
    workload: Workload,
    page_size: int,
    make_writers: Sequence[Callable[[dict[str, ChannelRef]], Writer]],
) -> list[tuple[float, dict[str, int]]]:
    """Seconds each writer took to write the workload in its own fresh store, and what the store
    then holds.

    The writers take turns transaction by transaction (the first one alternating), so that
    whatever else runs on the machine weighs on each of them alike.
    """
    with ExitStack() as stack:
        runs = []
        for make_writer in make_writers:
            db = stack.enter_context(fresh_store(dialect, pg_url))
            runs.append(_Run(db, make_writer(seed_catalogue(db, workload))))
        for run in runs:
            event.listen(run.db.engine, "before_cursor_execute", run.count)
        for i, (channel, orders) in enumerate(transactions(workload, page_size)):
            for run in runs if i % 2 == 0 else runs[::-1]:
                write = functools.partial(run.write, channel=channel, orders=orders)
                started = time.perf_counter()
                run.db.transact(write)
                run.seconds += time.perf_counter() - started
        for run in runs:
            event.remove(run.db.engine, "before_cursor_execute", run.count)
        return [(run.seconds, run.held()) for run in runs]


def measure(
    dialect: str, pg_url: str, workload: Workload, page_size: int
) -> dict[str, float | int]:
    """Ingest and bare insert of the same workload in the same transaction shape."""
    (ingest_s, ingest_held), (bare_s, bare_held) = timed_runs(
        dialect, pg_url, workload, page_size, (ingest_writer, bare_writer)
    )
    n = len(workload.orders)
    expected = {"orders": n, "lines": workload.lines}
    for what, held in (("ingest", ingest_held), ("bare insert", bare_held)):
        got = {key: held[key] for key in expected}
        if got != expected:
            raise RuntimeError(f"{dialect}: {what} stored {got}, expected {expected}")
    ingest_rate = n / ingest_s
    bare_rate = n / bare_s
    return {
        "orders": n,
        "lines": workload.lines,
        "transactions": len(transactions(workload, page_size)),
        "ingest_s": round(ingest_s, 3),
        "bare_s": round(bare_s, 3),
        "ingest_per_s": round(ingest_rate, 1),
        "bare_per_s": round(bare_rate, 1),
        "ratio": round(ingest_rate / bare_rate, 3),
        # Statements sent (cursor executes; SQLite's BEGIN IMMEDIATE counts, COMMIT and
        # PostgreSQL's BEGIN do not): on PostgreSQL each is a round trip, where the time goes.
        "ingest_statements_per_order": round(ingest_held["statements"] / n, 2),
        "bare_statements_per_order": round(bare_held["statements"] / n, 2),
        "dirty_listings_after_ingest": ingest_held["dirty_listings"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages-orders", type=int, default=5_000, help="orders, paged mode")
    parser.add_argument("--per-order-orders", type=int, default=1_000, help="orders, webhook mode")
    parser.add_argument("--page-size", type=int, default=250)
    parser.add_argument("--skus", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--pg-url", default=os.environ.get("CHANNEL_SYNC_BENCH_PG_URL", DEFAULT_PG_URL)
    )
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-postgresql", action="store_true")
    args = parser.parse_args()

    console = Console(width=max(120, Console().width))
    started = time.monotonic()
    modes = {
        "pages": (args.pages_orders, args.page_size),
        "per_order": (args.per_order_orders, 1),
    }
    dialects = [d for d in ("sqlite", "postgresql") if not getattr(args, f"no_{d}")]
    figures: dict[str, Any] = {}
    notes: list[str] = []
    for dialect in dialects:
        if dialect == "postgresql" and (problem := postgresql_problem(args.pg_url)):
            notes.append(f"PostgreSQL skipped: not reachable ({problem})")
            figures[dialect] = {"skipped": problem}
            continue
        figures[dialect] = {}
        for mode, (n_orders, page_size) in modes.items():
            workload = make_workload(random.Random(args.seed), n_orders, args.skus, "o")
            console.print(f"[dim]{dialect} {mode}: {n_orders} orders ...[/dim]")
            figures[dialect][mode] = measure(dialect, args.pg_url, workload, page_size)

    table = Table(
        title=(
            f"ingest vs bare insert: {args.skus} SKUs x {len(CHANNELS)} listings, "
            f"~2 lines per order, target ratio >= {TARGET_RATIO}"
        )
    )
    columns = ("database", "mode", "orders", "txns", "ingest/s", "bare/s", "ratio", "target")
    for column in (*columns, "stmts/order ingest", "stmts/order bare"):
        table.add_column(column, justify="right")
    for dialect, by_mode in figures.items():
        if "skipped" in by_mode:
            table.add_row(dialect, "-", "-", "-", "-", "-", "-", "skipped", "-", "-")
            continue
        for mode, row in by_mode.items():
            table.add_row(
                dialect,
                mode if mode == "per_order" else f"pages of {args.page_size}",
                str(row["orders"]),
                str(row["transactions"]),
                f"{row['ingest_per_s']:.0f}",
                f"{row['bare_per_s']:.0f}",
                f"{row['ratio']:.2f}",
                "met" if row["ratio"] >= TARGET_RATIO else "missed",
                f"{row['ingest_statements_per_order']:.2f}",
                f"{row['bare_statements_per_order']:.2f}",
            )
    console.print(table)
    for note in notes:
        console.print(note)
    figures["cores"] = os.cpu_count()
    figures["skus"] = args.skus
    figures["listings"] = args.skus * len(CHANNELS)
    figures["page_size"] = args.page_size
    figures["target_ratio"] = TARGET_RATIO
    figures["runtime_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
