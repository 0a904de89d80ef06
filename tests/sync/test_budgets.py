"""Daily budgets in the store: shared by instances, carried over a restart, shown in the status,
and a quota hold that defers stock jobs without spending their tries."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from connectors.base import Capabilities, PushOutcome, StockPushResult, StockTarget
from connectors.budgets import BudgetUse, MetersDailyBudgets
from connectors.ebay.quota import QuotaBook, RevisionBook
from connectors.errors import RateLimitedError
from connectors.memory import MemoryConnector
from sync.budgets import BudgetKeeper, budget_statuses, describe_budgets, purge_old
from sync.channels import register_channels
from sync.db import Database
from sync.models import ChannelBudget, JobState
from sync.outbox import RetrySchedule, list_jobs
from sync.status import channel_statuses
from tests.sync.engine_harness import ChannelSpec, StoreSpec, build_store, push_until_idle


class Books:
    """One process's eBay budgets, as the connector holds them (connectors/ebay/quota.py)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.quotas = QuotaBook({"trading": 100}, now=lambda: self.now)
        self.revisions = RevisionBook(now=lambda: self.now, limit=10, pacing_from=5)

    def take_budget_use(self) -> list[BudgetUse]:
        return [*self.quotas.take_use(), *self.revisions.take_use()]

    def seed_budget_use(self, totals: Sequence[BudgetUse]) -> None:
        self.quotas.seed(totals)
        self.revisions.seed(totals)

    def used(self, api: str = "trading") -> int:
        return {q.api: q.used for q in self.quotas.status()}[api]


NOON_PACIFIC = datetime(2026, 3, 4, 20, 0, tzinfo=UTC)


def _channel(db: Database) -> int:
    ids: dict[str, int] = db.transact(lambda s: register_channels(s, {"ebay": ("ebay", True)}))
    return ids["ebay"]


def test_two_instances_share_the_day_and_a_restart_starts_where_it_stood(
    database: Database,
) -> None:
    channel_id = _channel(database)
    a, b = Books(NOON_PACIFIC), Books(NOON_PACIFIC)
    assert isinstance(a, MetersDailyBudgets)
    keeper_a, keeper_b = (
        BudgetKeeper(database, {channel_id: a}, now=lambda: NOON_PACIFIC),
        BudgetKeeper(database, {channel_id: b}, now=lambda: NOON_PACIFIC),
    )

    async def scenario() -> None:
        for _ in range(3):
            a.quotas.record("trading")
        for _ in range(6):
            a.revisions.record("trading:111")
        for _ in range(2):
            b.quotas.record("trading")
        await keeper_a.sync_once()
        await keeper_b.sync_once()
        b.quotas.record("trading")  # after B's take: not in the store yet
        await keeper_a.sync_once()
        assert a.used() == 5  # its 3 and B's 2
        await keeper_b.sync_once()
        assert b.used() == 6 and b.revisions.count("trading:111") == 6
        assert b.revisions.hold_back("trading:111", 3) is not None  # B paces A's busy listing

        restarted = Books(NOON_PACIFIC)
        await BudgetKeeper(database, {channel_id: restarted}, now=lambda: NOON_PACIFIC).sync_once()
        assert restarted.used() == 6 and restarted.revisions.count("trading:111") == 6

    asyncio.run(scenario())
    with database.read_session() as session:
        rows = {
            (r.scope, r.key): (r.used, r.daily_limit)
            for r in session.scalars(select(ChannelBudget))
        }
        assert rows[("api", "trading")] == (6, 100)
        assert rows[("listing", "trading:111")] == (6, 10)
        assert rows[("api", "fulfillment")][0] == 0  # announced with its limit, unused
        (status,) = channel_statuses(session, NOON_PACIFIC)
    assert status.budgets is not None
    trading = next(q for q in status.budgets["quotas"] if q["api"] == "trading")
    assert (trading["used"], trading["limit"], trading["remaining"]) == (6, 100, 94)
    assert status.budgets["revisions"]["listings"] == [
        {"listing": "trading:111", "revisions": 6, "limit": 10}
    ]
    assert status.to_json()["budgets"] == status.budgets
    assert describe_budgets(status.budgets) == "trading 6/100; 1 listing(s) near the revision limit"


def test_the_next_day_starts_from_zero_and_old_rows_are_purged(database: Database) -> None:
    channel_id = _channel(database)
    books = Books(NOON_PACIFIC)
    keeper = BudgetKeeper(database, {channel_id: books}, now=lambda: NOON_PACIFIC)

    async def scenario() -> None:
        books.quotas.record("trading")
        books.quotas.mark_exhausted("trading")
        await keeper.sync_once()
        tomorrow = Books(NOON_PACIFIC + timedelta(days=1))
        await BudgetKeeper(
            database, {channel_id: tomorrow}, now=lambda: NOON_PACIFIC + timedelta(days=1)
        ).sync_once()
        assert tomorrow.used() == 0
        assert not any(q.is_exhausted for q in tomorrow.quotas.status())

    asyncio.run(scenario())
    with database.read_session() as session:
        today = budget_statuses(session, NOON_PACIFIC)[channel_id]
        assert next(q for q in today["quotas"] if q["api"] == "trading")["exhausted"]
        assert budget_statuses(session, NOON_PACIFIC + timedelta(days=1)) != {}
    purged = database.transact(lambda s: purge_old(s, NOON_PACIFIC + timedelta(days=9)))
    assert purged > 0
    with database.read_session() as session:
        assert session.scalars(select(ChannelBudget)).all() == []


def test_a_store_that_fails_keeps_the_use_for_the_next_round(database: Database) -> None:
    channel_id = _channel(database)
    books = Books(NOON_PACIFIC)
    keeper = BudgetKeeper(database, {channel_id: books}, now=lambda: NOON_PACIFIC)
    books.quotas.record("trading")
    real = database.transact
    calls = {"n": 0}

    def failing(fn, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("store down")
        return real(fn, **kwargs)

    database.transact = failing  # type: ignore[method-assign]
    try:
        asyncio.run(keeper.sync_once())
        books.quotas.record("trading")
        asyncio.run(keeper.sync_once())
    finally:
        database.transact = real  # type: ignore[method-assign]
    with database.read_session() as session:
        row = session.scalar(select(ChannelBudget).where(ChannelBudget.key == "trading"))
        assert row is not None and row.used == 2


def test_a_quota_hold_defers_stock_jobs_without_spending_their_tries(database: Database) -> None:
    store = build_store(
        database,
        StoreSpec(
            channels=[ChannelSpec("shop", Capabilities(max_stock_batch=4))],
            skus=["S"],
            on_hand={("S", "default"): 7},
        ),
    )
    market = store.channels["shop"].market
    hold = RateLimitedError("pacing the daily trading quota", retry_after=0.01)
    market.faults.fail_next("push_stock", hold, times=6)
    retry = RetrySchedule(base_s=0.01, cap_s=0.05, max_attempts=2)
    pusher = asyncio.run(push_until_idle(store, retry=retry))
    assert market.calls["push_stock"] == 7
    assert market.stock_of("S") == 7
    assert pusher.summary.retried == 6
    with database.read_session() as session:
        assert list_jobs(session, state=JobState.DEAD) == []


class HoldingConnector(MemoryConnector):
    """A channel whose own limits hold listing S back, unsent, for its first `holds` pushes."""

    holds = 6

    async def push_stock(self, targets: Sequence[StockTarget]) -> Sequence[StockPushResult]:
        if self.holds:
            self.holds -= 1
            reason = "coalescing: 130/250 revisions of this listing today"
            return [
                StockPushResult(t.listing_ref, PushOutcome.RETRY, error=reason, retry_after=0.01)
                for t in targets
            ]
        return await super().push_stock(targets)


def test_a_listing_held_back_by_its_revision_limit_is_deferred_not_failed(
    database: Database,
) -> None:
    spec = ChannelSpec("shop", Capabilities(max_stock_batch=4))
    store = build_store(
        database, StoreSpec(channels=[spec], skus=["S"], on_hand={("S", "default"): 3})
    )
    channel = store.channels["shop"]
    connector = HoldingConnector(channel.market, name=spec.name, capabilities=spec.capabilities)
    channel.connector = connector
    retry = RetrySchedule(base_s=0.01, cap_s=0.05, max_attempts=2)
    pusher = asyncio.run(push_until_idle(store, retry=retry))
    assert connector.holds == 0 and channel.market.stock_of("S") == 3
    assert pusher.summary.retried == 6 and pusher.summary.applied == 1
    with database.read_session() as session:
        assert list_jobs(session, state=JobState.DEAD) == []


@pytest.mark.parametrize("used", [0, 3])
def test_describe_budgets_names_only_what_was_used(used: int) -> None:
    quota = {"api": "trading", "used": used, "limit": 5, "exhausted": False}
    text = describe_budgets({"quotas": [quota], "revisions": {"near_limit": 0}})
    assert text == ("trading 3/5" if used else "no calls today")
    assert describe_budgets(None) == ""
