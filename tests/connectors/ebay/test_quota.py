"""The daily budgets on their own: pacing, the reserve for shipments, eBay's day, and carrying
the counts over a restart."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.ebay.quota import QuotaBook, RevisionBook
from connectors.errors import RateLimitedError
from tests.connectors.ebay.fake_ebay import FakeClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_the_reserve_is_kept_for_priority_calls() -> None:
    clock = FakeClock()
    book = QuotaBook({"fulfillment": 100}, now=clock.wall)
    for _ in range(98):
        book.record("fulfillment")
    assert book.wait_for("fulfillment") == pytest.approx(12 * 3600)  # 2 kept back
    assert book.wait_for("fulfillment", is_priority=True) == 0.0  # and never spaced out
    book.record("fulfillment")
    book.record("fulfillment")
    assert book.wait_for("fulfillment", is_priority=True) == pytest.approx(12 * 3600)
    (status,) = [q for q in book.status() if q.api == "fulfillment"]
    assert status.remaining == 0 and status.is_exhausted
    assert status.resets_at == datetime(2026, 3, 5, 8, 0, tzinfo=UTC)  # midnight Pacific


async def test_a_short_pacing_gap_is_waited_here_a_long_one_goes_back() -> None:
    clock = FakeClock()
    book = QuotaBook({"trading": 10_000}, now=clock.wall)
    for _ in range(5000):
        book.record("trading")
    # 12 h left, 4800 usable: one call every 9 s.
    with pytest.raises(RateLimitedError) as caught:
        await book.admit("trading", sleep=clock.sleep, channel="c", operation="op")
    assert caught.value.retry_after == pytest.approx(9.0)
    clock.advance(6)
    await book.admit("trading", sleep=clock.sleep, channel="c", operation="op")
    assert clock.sleeps == [pytest.approx(3.0, abs=0.01)]


def test_a_new_day_starts_from_zero_and_counts_survive_a_restart() -> None:
    clock = FakeClock()
    book = QuotaBook({"trading": 5000}, now=clock.wall)
    for _ in range(3):
        book.record("trading")
    book.mark_exhausted("inventory")
    saved = book.snapshot()
    restarted = QuotaBook({"trading": 5000}, now=clock.wall)
    restarted.restore(saved)
    counts = {q.api: (q.used, q.is_exhausted) for q in restarted.status()}
    assert counts["trading"] == (3, False) and counts["inventory"] == (0, True)
    clock.advance(12 * 3600 + 1)
    counts = {q.api: (q.used, q.is_exhausted) for q in restarted.status()}
    assert counts["trading"] == (0, False) and counts["inventory"] == (0, False)
    fresh = QuotaBook({"trading": 5000}, now=clock.wall)
    fresh.restore(saved)  # yesterday's snapshot
    assert {q.api: q.used for q in fresh.status()}["trading"] == 0


def test_revision_counts_survive_a_restart_the_same_day_only() -> None:
    clock = FakeClock()
    book = RevisionBook(now=clock.wall)
    for _ in range(130):
        book.record("trading:1")
    book.record("inventory:MUG")
    saved = book.snapshot()
    restarted = RevisionBook(now=clock.wall)
    restarted.restore(saved)
    assert restarted.count("trading:1") == 130 and restarted.count("inventory:MUG") == 1
    assert restarted.status().to_json()["pacing"] == [{"listing": "trading:1", "revisions": 130}]
    clock.advance(12 * 3600 + 1)
    later = RevisionBook(now=clock.wall)
    later.restore(saved)
    assert later.count("trading:1") == 0


def test_quotas_must_be_positive() -> None:
    with pytest.raises(ValueError, match="trading"):
        QuotaBook({"trading": 0})
