"""Channels' daily budgets in the store: what every instance used, taken back by each of them.

A connector that meters a channel's day on our side (connectors/budgets.py: eBay's calls per API
and revisions per listing) keeps the counts it decides with in memory. The keeper here, one per
process, hands them to the store: every `interval_s` it takes what each such connector used since
the last time, adds it to the day's rows (an upsert that adds, so instances never overwrite each
other), reads back the rows that changed, and seeds the connector with the totals. The first
round runs before the daemon starts pushing, so a restart begins where the day stood.

The status views read the same rows: quota used/limit per API, listings near their daily
revision limit (`channel-sync status` works with the daemon down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from connectors.budgets import SCOPE_API, SCOPE_LISTING, BudgetUse, MetersDailyBudgets
from sync.db import Database
from sync.models import ChannelBudget, utcnow

log = logging.getLogger(__name__)

# Rows changed this long before the last read are read again: instances' clocks differ a little
# (and every FULL_READ, all of the day's rows are, whatever the clocks).
CLOCK_SLACK = timedelta(seconds=60)
FULL_READ = timedelta(minutes=5)
KEEP_DAYS = 7  # rows of past days kept for a look back, then purged
NEAR_SHARE = 0.5  # a listing from half its daily revisions on is shown as near the limit
SHOWN_LISTINGS = 20


def add_use(
    session: Session, channel_id: int, uses: Sequence[BudgetUse], now: datetime | None = None
) -> None:
    """Add `uses` (deltas) to the day's rows, creating them; concurrent instances add up."""
    if not uses:
        return
    now = now or utcnow()
    merged: dict[tuple[str, str, Any], BudgetUse] = {}
    for use in uses:  # one row per key in one statement: an upsert may not touch a row twice
        key = (use.scope, use.key, use.day)
        seen = merged.get(key)
        merged[key] = (
            use
            if seen is None
            else BudgetUse(
                use.scope,
                use.key,
                use.day,
                seen.used + use.used,
                use.limit,
                use.resets_at,
                seen.is_exhausted or use.is_exhausted,
            )
        )
    rows = [
        {
            "channel_id": channel_id,
            "scope": use.scope,
            "key": use.key,
            "day": use.day,
            "used": use.used,
            "daily_limit": use.limit,
            "is_exhausted": use.is_exhausted,
            "resets_at": use.resets_at,
            "updated_at": now,
        }
        for use in merged.values()
    ]
    table = ChannelBudget.__table__
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(ChannelBudget)
    stmt = stmt.on_conflict_do_update(
        index_elements=["channel_id", "scope", "key", "day"],
        set_={
            "used": table.c.used + stmt.excluded.used,
            "daily_limit": stmt.excluded.daily_limit,
            "is_exhausted": table.c.is_exhausted | stmt.excluded.is_exhausted,
            "resets_at": stmt.excluded.resets_at,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    # Fixed order: two instances upserting the same rows lock them in the same order.
    session.execute(stmt, sorted(rows, key=lambda r: (r["scope"], r["key"], r["day"])))


def read_totals(
    session: Session, channel_id: int, now: datetime, changed_since: datetime | None = None
) -> list[BudgetUse]:
    """The rows of the channel's current day (those changed since `changed_since`, if given)."""
    query = select(ChannelBudget).where(
        ChannelBudget.channel_id == channel_id, ChannelBudget.resets_at > now
    )
    if changed_since is not None:
        query = query.where(ChannelBudget.updated_at >= changed_since)
    return [_use(row) for row in session.scalars(query)]


def purge_old(session: Session, now: datetime, keep_days: int = KEEP_DAYS) -> int:
    """Delete rows of days that ended more than `keep_days` ago; answer how many."""
    result = session.execute(
        delete(ChannelBudget).where(ChannelBudget.resets_at < now - timedelta(days=keep_days))
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _use(row: ChannelBudget) -> BudgetUse:
    return BudgetUse(
        row.scope,
        row.key,
        row.day,
        row.used,
        row.daily_limit,
        row.resets_at,
        row.is_exhausted,
    )


def budget_statuses(session: Session, now: datetime) -> dict[int, dict[str, Any]]:
    """channel id -> its budgets today, for /api/status: quota per API, listings near the
    revision limit (only channels that keep budgets)."""
    rows = session.scalars(
        select(ChannelBudget)
        .where(ChannelBudget.resets_at > now)
        .order_by(ChannelBudget.channel_id, ChannelBudget.scope, ChannelBudget.key)
    )
    quotas: dict[int, list[dict[str, Any]]] = defaultdict(list)
    near: dict[int, list[ChannelBudget]] = defaultdict(list)
    limits: dict[int, int] = {}
    for row in rows:
        if row.scope == SCOPE_API:
            exhausted = row.is_exhausted or row.used >= row.daily_limit
            quotas[row.channel_id].append(
                {
                    "api": row.key,
                    "used": row.used,
                    "limit": row.daily_limit,
                    "remaining": 0 if exhausted else row.daily_limit - row.used,
                    "pacing": row.used >= row.daily_limit * NEAR_SHARE,
                    "exhausted": exhausted,
                    "resets_at": row.resets_at.isoformat(),
                }
            )
        elif row.scope == SCOPE_LISTING:
            limits[row.channel_id] = row.daily_limit
            if row.used >= row.daily_limit * NEAR_SHARE:
                near[row.channel_id].append(row)
    found: dict[int, dict[str, Any]] = {}
    for channel_id in set(quotas) | set(limits):
        busy = sorted(near.get(channel_id, []), key=lambda r: (-r.used, r.key))
        found[channel_id] = {
            "quotas": quotas.get(channel_id, []),
            "revisions": {
                "limit_per_listing": limits.get(channel_id),
                "near_limit": len(busy),
                "listings": [
                    {"listing": r.key, "revisions": r.used, "limit": r.daily_limit}
                    for r in busy[:SHOWN_LISTINGS]
                ],
            },
        }
    return found


def describe_budgets(budgets: Mapping[str, Any] | None) -> str:
    """One line for `channel-sync status`: calls used/limit per API in use, listings near the
    revision limit."""
    if not budgets:
        return ""
    parts = [
        f"{q['api']} {q['used']}/{q['limit']}" + (" (spent)" if q["exhausted"] else "")
        for q in budgets.get("quotas", [])
        if q["used"] or q["exhausted"]
    ]
    near = budgets.get("revisions", {}).get("near_limit") or 0
    if near:
        parts.append(f"{near} listing(s) near the revision limit")
    return "; ".join(parts) or "no calls today"


class BudgetKeeper:
    """Stores the daily budgets of this process's metering connectors and seeds them back."""

    name = "budget-keeper"

    def __init__(
        self,
        db: Database,
        connectors: Mapping[int, MetersDailyBudgets],
        *,
        interval_s: float = 1.0,
        purge_every_s: float = 3600.0,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self._now = now
        self.connectors = dict(connectors)  # channel id -> connector
        self.interval_s = interval_s
        self.purge_every_s = purge_every_s
        self._held: dict[int, list[BudgetUse]] = {}  # taken, but the store refused them
        self._read_at: dict[int, datetime] = {}
        self._full_at: dict[int, datetime] = {}
        self._purged_at: datetime | None = None
        self._failing = False

    async def sync_once(self) -> None:
        """One round for every connector: store what it used, seed it with the totals."""
        for channel_id, connector in self.connectors.items():
            taken = [*self._held.pop(channel_id, []), *connector.take_budget_use()]
            now = self._now()
            since = self._read_at.get(channel_id)
            if since is not None and now - self._full_at.get(channel_id, now) > FULL_READ:
                since = None
            try:
                totals = await asyncio.to_thread(self._exchange, channel_id, taken, now, since)
            except Exception:
                # The supervisor of this loop: keep what was taken for the next round.
                self._held[channel_id] = taken
                if not self._failing:
                    log.exception("daily budgets could not be stored; trying again")
                self._failing = True
                continue
            if self._failing:
                log.info("daily budgets are stored again")
                self._failing = False
            self._read_at[channel_id] = now - CLOCK_SLACK
            if since is None:
                self._full_at[channel_id] = now
            connector.seed_budget_use(totals)

    def _exchange(
        self, channel_id: int, taken: Sequence[BudgetUse], now: datetime, since: datetime | None
    ) -> list[BudgetUse]:
        def work(session: Session) -> list[BudgetUse]:
            add_use(session, channel_id, taken, now)
            return read_totals(session, channel_id, now, since)

        if not taken and since is not None:
            with self.db.read_session() as session:
                return read_totals(session, channel_id, now, since)
        return self.db.transact(work)

    async def run(self, stop: asyncio.Event) -> None:
        """Every `interval_s` until stopped, then a last round so nothing used is lost."""
        while not stop.is_set():
            await self.sync_once()
            await self._purge()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)
        await self.sync_once()

    async def _purge(self) -> None:
        now = self._now()
        if self._purged_at and (now - self._purged_at).total_seconds() < self.purge_every_s:
            return
        self._purged_at = now
        try:
            await asyncio.to_thread(self.db.transact, lambda s: purge_old(s, now))
        except Exception:
            log.exception("old daily budgets could not be purged")
