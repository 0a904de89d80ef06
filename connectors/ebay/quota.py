"""The daily budgets eBay meters, kept on the connector's side: calls per API family against the
account's quota, and revisions per listing against eBay's 250 a day.

Both slow down before the budget runs out rather than after: past a share of the day's budget,
what is left is spread evenly over what is left of the day, so the last call of the day is still
there for the last change of the day. A call that would have to wait long is not held here: it
goes back to the caller (RateLimitedError, or a held-back stock target) and the engine's own
coalescing turns the targets that pile up meanwhile into one.

The counts live in memory. The budgets are eBay's: a restart does not give them back, and every
instance of the daemon spends the same ones. `take_use` hands the daemon what was used since it
last asked, and `seed` takes back the totals it stored for the day from every instance
(connectors/budgets.py); `snapshot`/`restore` carry the counts of one process.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.budgets import SCOPE_API, SCOPE_LISTING, BudgetUse
from connectors.ebay import const
from connectors.errors import RateLimitedError

Now = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def quota_zone(name: str = const.QUOTA_TIME_ZONE) -> ZoneInfo | Any:
    """The time zone whose midnight starts eBay's day (UTC where the zone database is missing)."""
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        return UTC


def _day(when: datetime, zone: Any) -> date:
    return when.astimezone(zone).date()


def _day_end(when: datetime, zone: Any) -> datetime:
    return _end_of(_day(when, zone), zone)


def _end_of(day: date, zone: Any) -> datetime:
    midnight = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return midnight.astimezone(UTC)


@dataclass
class _Count:
    day: date
    used: int = 0
    last_at: datetime | None = None
    is_exhausted: bool = False


@dataclass(frozen=True)
class ApiQuotaStatus:
    """One API family's calls today against its daily quota."""

    api: str
    used: int
    limit: int
    is_pacing: bool  # calls are being spread over what is left of the day
    is_exhausted: bool  # eBay refused for quota, or nothing is left: calls wait for the reset
    resets_at: datetime

    @property
    def remaining(self) -> int:
        """Calls left today."""
        return 0 if self.is_exhausted else max(0, self.limit - self.used)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for /api/status."""
        return {
            "api": self.api,
            "used": self.used,
            "limit": self.limit,
            "remaining": self.remaining,
            "pacing": self.is_pacing,
            "exhausted": self.is_exhausted,
            "resets_at": self.resets_at.isoformat(),
        }


class QuotaBook:
    """Calls per API family per day, and how long the next call should wait."""

    def __init__(
        self,
        limits: Mapping[str, int],
        *,
        now: Now = _utc_now,
        zone: Any = None,
        pacing_from: float = const.QUOTA_PACING_FROM,
        reserve: float = const.QUOTA_RESERVE,
        max_inline_wait_s: float = const.QUOTA_MAX_INLINE_WAIT_S,
    ) -> None:
        for api, limit in limits.items():
            if limit < 1:
                raise ValueError(f"daily quota of {api} must be at least 1, got {limit}")
        self._limits = dict(limits)
        self._now = now
        self._zone = zone if zone is not None else quota_zone()
        self._pacing_from = pacing_from
        self._reserve = reserve
        self._max_inline = max_inline_wait_s
        self._counts: dict[str, _Count] = {}
        self._unsent: dict[tuple[str, date], int] = {}  # calls not yet taken by the daemon
        self._unsent_exhausted: set[tuple[str, date]] = set()
        self._announced: date | None = None  # the day every quota was last handed over

    def _count(self, api: str, now: datetime) -> _Count:
        today = _day(now, self._zone)
        found = self._counts.get(api)
        if found is None or found.day != today:
            found = self._counts[api] = _Count(today)
        return found

    def limit(self, api: str) -> int:
        """The daily quota of `api`."""
        return self._limits.get(api, const.DEFAULT_DAILY_QUOTAS.get(api, 10_000))

    def wait_for(self, api: str, *, is_priority: bool = False) -> float:
        """Seconds before the next call of `api` keeps the day's budget lasting; 0 to go now.

        Priority calls (status out: a shipment the buyer waits for) are not spaced out and may
        use the reserve the others leave; every call waits for the reset once the quota is
        spent."""
        now = self._now()
        count = self._count(api, now)
        limit = self.limit(api)
        seconds_left = max(1.0, (_day_end(now, self._zone) - now).total_seconds())
        reserve = 0 if is_priority else math.ceil(limit * self._reserve)
        available = limit - count.used - reserve
        if count.is_exhausted or available <= 0:
            return seconds_left
        if is_priority or count.used < limit * self._pacing_from or count.last_at is None:
            return 0.0
        interval = seconds_left / available
        elapsed = (now - count.last_at).total_seconds()
        return max(0.0, interval - elapsed)

    async def admit(
        self,
        api: str,
        *,
        sleep: Sleep,
        channel: str,
        operation: str,
        is_priority: bool = False,
    ) -> None:
        """Wait a short pacing gap here; a longer one goes back as RateLimitedError."""
        wait = self.wait_for(api, is_priority=is_priority)
        if wait <= 0:
            return
        if wait > self._max_inline:
            raise RateLimitedError(
                f"pacing eBay's daily {api} quota ({self._count(api, self._now()).used}/"
                f"{self.limit(api)} calls today)",
                retry_after=wait,
                channel=channel,
                operation=operation,
            )
        await sleep(wait)

    def record(self, api: str) -> None:
        """One call of `api` went out (eBay counts it whatever it answered)."""
        now = self._now()
        count = self._count(api, now)
        count.used += 1
        count.last_at = now
        self._unsent[api, count.day] = self._unsent.get((api, count.day), 0) + 1

    def mark_exhausted(self, api: str) -> None:
        """eBay answered that the day's quota of `api` is spent: wait for the reset."""
        count = self._count(api, self._now())
        count.is_exhausted = True
        self._unsent_exhausted.add((api, count.day))

    def take_use(self) -> list[BudgetUse]:
        """Calls since the last take, per API and day; every quota once a day, used or not, so
        that its limit shows."""
        today = _day(self._now(), self._zone)
        taken = dict(self._unsent)
        if self._announced != today:
            for api in sorted(set(const.DEFAULT_DAILY_QUOTAS) | set(self._limits)):
                taken.setdefault((api, today), 0)
            self._announced = today
        for key in self._unsent_exhausted:
            taken.setdefault(key, 0)
        found = [
            BudgetUse(
                SCOPE_API,
                api,
                day,
                used,
                self.limit(api),
                _end_of(day, self._zone),
                is_exhausted=(api, day) in self._unsent_exhausted,
            )
            for (api, day), used in sorted(taken.items())
        ]
        self._unsent.clear()
        self._unsent_exhausted.clear()
        return found

    def seed(self, totals: Iterable[BudgetUse]) -> None:
        """Today's totals as stored by every instance: each count becomes its total plus the
        calls made here since the last take (never less than it is)."""
        now = self._now()
        today = _day(now, self._zone)
        for total in totals:
            if total.scope != SCOPE_API or total.day != today:
                continue
            count = self._count(total.key, now)
            count.used = max(count.used, total.used + self._unsent.get((total.key, today), 0))
            count.is_exhausted = count.is_exhausted or total.is_exhausted
            if count.used and count.last_at is None:
                count.last_at = now  # after a restart, pace as if a call had just gone out

    def status(self) -> list[ApiQuotaStatus]:
        """Every API family with a quota, as of now."""
        now = self._now()
        resets_at = _day_end(now, self._zone)
        found = []
        for api in sorted(set(const.DEFAULT_DAILY_QUOTAS) | set(self._limits)):
            count = self._count(api, now)
            limit = self.limit(api)
            found.append(
                ApiQuotaStatus(
                    api=api,
                    used=count.used,
                    limit=limit,
                    is_pacing=count.used >= limit * self._pacing_from,
                    is_exhausted=count.is_exhausted or count.used >= limit,
                    resets_at=resets_at,
                )
            )
        return found

    def snapshot(self) -> dict[str, Any]:
        """Today's counts, for the daemon to keep over a restart."""
        now = self._now()
        return {
            api: {"day": c.day.isoformat(), "used": c.used, "exhausted": c.is_exhausted}
            for api, c in self._counts.items()
            if c.day == _day(now, self._zone)
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Take back counts a snapshot kept (those of another day are dropped)."""
        today = _day(self._now(), self._zone)
        for api, saved in snapshot.items():
            if isinstance(saved, Mapping) and saved.get("day") == today.isoformat():
                count = self._count(api, self._now())
                count.used = max(count.used, int(saved.get("used", 0)))
                count.is_exhausted = count.is_exhausted or bool(saved.get("exhausted"))


@dataclass(frozen=True)
class RevisionStatus:
    """Listings close to eBay's daily revision limit."""

    limit: int
    pacing: tuple[tuple[str, int], ...]  # (listing, revisions today) being spaced out
    at_limit: tuple[str, ...]  # listings that can take no more revisions today (but 0)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form for /api/status."""
        return {
            "limit_per_listing": self.limit,
            "pacing": [{"listing": key, "revisions": n} for key, n in self.pacing],
            "at_limit": list(self.at_limit),
        }


class RevisionBook:
    """Revisions per listing per day, and whether a listing may be revised now."""

    def __init__(
        self,
        *,
        now: Now = _utc_now,
        zone: Any = None,
        limit: int = const.LISTING_REVISIONS_PER_DAY,
        zero_reserve: int = const.ZERO_RESERVE,
        pacing_from: int = const.REVISION_PACING_FROM,
    ) -> None:
        self._now = now
        self._zone = zone if zone is not None else quota_zone()
        self._limit = limit
        self._zero_reserve = zero_reserve
        self._pacing_from = pacing_from
        self._day: date | None = None
        self._counts: dict[str, _Count] = {}
        self._unsent: dict[tuple[str, date], int] = {}  # revisions not yet taken by the daemon

    def _roll(self, now: datetime) -> date:
        today = _day(now, self._zone)
        if self._day != today:  # a new day: yesterday's counts no longer matter
            self._day = today
            self._counts = {}
        return today

    def _count(self, key: str, now: datetime) -> _Count:
        today = self._roll(now)
        found = self._counts.get(key)
        if found is None:
            found = self._counts[key] = _Count(today)
        return found

    def count(self, key: str) -> int:
        """Revisions of listing `key` today."""
        return self._count(key, self._now()).used

    def hold_back(self, key: str, quantity: int, *, is_decrease: bool = False) -> str | None:
        """Why listing `key` should not be revised to `quantity` now, or None to send it."""
        held = self.hold(key, quantity, is_decrease=is_decrease)
        return None if held is None else held[0]

    def hold(
        self, key: str, quantity: int, *, is_decrease: bool = False
    ) -> tuple[str, float] | None:
        """Why listing `key` should not be revised to `quantity` now and for how many seconds,
        or None to send it.

        Showing 0 may use the last revisions of the day: a sold-out listing must stop selling.
        Anything else stops `zero_reserve` short of the limit. Past `pacing_from`, a rise waits
        its turn so that what is left lasts the day (the engine coalesces what piles up); a
        drop does not wait, since the listing shows more than there is."""
        now = self._now()
        count = self._count(key, now)
        cap = self._limit if quantity == 0 else self._limit - self._zero_reserve
        resets_at = _day_end(now, self._zone)
        if count.used >= cap:
            return (
                f"{count.used}/{self._limit} revisions of this listing today (eBay's daily "
                f"limit); next after {resets_at.isoformat()}",
                max(1.0, (resets_at - now).total_seconds()),
            )
        if quantity == 0 or is_decrease or count.used < self._pacing_from or count.last_at is None:
            return None
        interval = (resets_at - now).total_seconds() / (cap - count.used)
        wait = interval - (now - count.last_at).total_seconds()
        if wait <= 0:
            return None
        return (
            f"coalescing: {count.used}/{self._limit} revisions of this listing today; "
            f"next in {math.ceil(wait)}s",
            wait,
        )

    def record(self, key: str) -> None:
        """Listing `key` was (or may have been) revised just now."""
        now = self._now()
        count = self._count(key, now)
        count.used += 1
        count.last_at = now
        self._unsent[key, count.day] = self._unsent.get((key, count.day), 0) + 1

    def take_use(self) -> list[BudgetUse]:
        """Revisions since the last take, per listing and day."""
        found = [
            BudgetUse(SCOPE_LISTING, key, day, used, self._limit, _end_of(day, self._zone))
            for (key, day), used in sorted(self._unsent.items())
        ]
        self._unsent.clear()
        return found

    def seed(self, totals: Iterable[BudgetUse]) -> None:
        """Today's totals per listing as stored by every instance, plus the revisions made here
        since the last take (never less than a count is)."""
        now = self._now()
        today = self._roll(now)
        for total in totals:
            if total.scope != SCOPE_LISTING or total.day != today:
                continue
            count = self._count(total.key, now)
            count.used = max(count.used, total.used + self._unsent.get((total.key, today), 0))
            if count.used and count.last_at is None:
                count.last_at = now

    def status(self) -> RevisionStatus:
        """Listings being spaced out or at the limit today."""
        self._roll(self._now())
        busy = sorted(
            ((key, c.used) for key, c in self._counts.items() if c.used >= self._pacing_from),
            key=lambda pair: (-pair[1], pair[0]),
        )
        return RevisionStatus(
            limit=self._limit,
            pacing=tuple(busy),
            at_limit=tuple(key for key, n in busy if n >= self._limit - self._zero_reserve),
        )

    def snapshot(self) -> dict[str, Any]:
        """Today's counts (only listings revised today), to keep over a restart."""
        today = self._roll(self._now())
        return {
            "day": today.isoformat(),
            "counts": {k: c.used for k, c in self._counts.items() if c.used},
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Take back today's counts from a snapshot."""
        now = self._now()
        if snapshot.get("day") != self._roll(now).isoformat():
            return
        for key, used in dict(snapshot.get("counts") or {}).items():
            count = self._count(str(key), now)
            count.used = max(count.used, int(used))
