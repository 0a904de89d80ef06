"""Planning many dirty listings at once (a reconcile that found drift everywhere, a catalogue
import) writes its stock jobs in bulk: the statements one planning transaction runs do not grow
with the number of listings, so it holds SQLite's write lock briefly and other writers do not
fail with "database is locked"."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select, update

from sync.db import Database
from sync.models import Channel, JobState, Listing, OutboxJob, Sku, StockLevel
from sync.reservations import StockRules
from sync.stock_push import STOCK_KEY, ChannelStockPlan, plan_targets


def _store(database: Database, n: int) -> int:
    with database.session() as session:
        channel = Channel(name="shop", kind="memory")
        session.add(channel)
        skus = [f"S{i:05d}" for i in range(n)]
        session.add_all(Sku(sku=sku) for sku in skus)
        session.add_all(StockLevel(sku=sku, location="default", on_hand=7) for sku in skus)
        session.flush()
        session.add_all(
            Listing(
                channel_id=channel.id,
                sku=sku,
                external_ref=sku,
                is_dirty=True,
                last_pushed_quantity=0 if i % 10 else 7,  # every tenth shows the right figure
            )
            for i, sku in enumerate(skus)
        )
        return channel.id


@contextmanager
def _counting(database: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]).split(None, 1)[0].upper())

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(database.engine, "before_cursor_execute", count)


def _plan(database: Database, channel_id: int) -> tuple[dict[int, int], list[str]]:
    plans = {channel_id: ChannelStockPlan(channel_id, StockRules(), ("default",))}
    with _counting(database) as statements:
        planned = database.transact(lambda s: plan_targets(s, plans, limit=5000))
    return {cid: each.jobs for cid, each in planned.items()}, statements


def test_a_planning_round_writes_its_jobs_in_bulk(database: Database) -> None:
    small, large = 20, 600
    channel_id = _store(database, small)
    planned, few = _plan(database, channel_id)
    assert planned == {channel_id: 18}

    with database.session() as session:
        session.execute(update(Listing).values(is_dirty=True))
        session.add_all(Sku(sku=f"T{i:05d}") for i in range(large - small))
        session.flush()
        session.add_all(
            Listing(channel_id=channel_id, sku=f"T{i:05d}", external_ref=f"T{i:05d}")
            for i in range(large - small)
        )
    planned, many = _plan(database, channel_id)
    # The 18 jobs still pending already carry the figure (nothing to replace); the 580 new
    # listings (no stock: 0, never told anything) get a job each.
    assert planned == {channel_id: large - small}
    # An executemany counts once on both drivers: 580 jobs take as many INSERT statements as
    # 18 did (one per channel), where they took one each.
    assert many.count("INSERT") == few.count("INSERT")

    with database.read_session() as session:
        jobs = {
            key: (payload["quantity"], payload["seq"])
            for key, payload in session.execute(
                select(OutboxJob.identity_key, OutboxJob.payload).where(
                    OutboxJob.state == JobState.PENDING
                )
            )
        }
        ids = {ref: i for ref, i in session.execute(select(Listing.external_ref, Listing.id))}
    assert len(jobs) == 18 + (large - small)
    assert jobs[STOCK_KEY.format(listing_id=ids["S00001"])] == (7, 1)
    assert jobs[STOCK_KEY.format(listing_id=ids["T00001"])] == (0, 1)
    assert STOCK_KEY.format(listing_id=ids["S00000"]) not in jobs  # showed 7 already
