"""Per-operation token buckets at Amazon's usage plans: a burst, then 429 with
x-amzn-RateLimit-Limit counted as a call over the bucket, refills at the rate; plan overrides;
and injected faults counted apart from throttling."""

from __future__ import annotations

import pytest

from sandbox.amazon import USAGE_PLANS
from tests.sandbox.amazon.conftest import Seller, availability

pytestmark = pytest.mark.anyio


def test_the_usage_plans_are_channels_md_figures() -> None:
    plans = {op: (plan.rate, plan.burst) for op, plan in USAGE_PLANS.items()}

    assert plans["searchOrders"] == (0.0056, 20)
    assert plans["getOrder"] == (0.5, 30)
    assert plans["getOrders"] == (0.0167, 20)
    assert plans["getOrderItems"] == (0.5, 30)
    assert plans["confirmShipment"] == (2.0, 10)
    assert plans["patchListingsItem"] == (5.0, 5)
    assert plans["createFeedDocument"] == (0.5, 15)
    assert plans["createFeed"] == (0.0083, 15)
    assert plans["getFeed"] == (2.0, 15)
    assert plans["getFeedDocument"] == (0.0222, 10)


async def test_calls_past_the_burst_get_429_and_are_counted_as_over_the_bucket(
    seller: Seller,
) -> None:
    await seller.list(A=5)
    statuses = [(await seller.patch("A", availability(n))).status_code for n in range(7)]

    assert statuses == [200] * 5 + [429] * 2
    refused = await seller.patch("A", availability(99))
    assert refused.headers["x-amzn-RateLimit-Limit"] == "5"
    assert refused.json()["errors"][0]["code"] == "QuotaExceeded"
    assert "retry-after" not in refused.headers
    calls = await seller.control("GET", "/calls")
    assert calls["calls"]["patchListingsItem"] == 8
    assert calls["throttled"] == {"patchListingsItem": 3}
    assert calls["faulted"] == {}
    assert await seller.control("GET", "/inventory") == {"A": 4}


async def test_the_bucket_refills_at_the_rate(seller: Seller) -> None:
    await seller.list(A=5)
    for n in range(5):
        assert (await seller.patch("A", availability(n))).status_code == 200

    seller.clock.advance(0.1)
    assert (await seller.patch("A", availability(1))).status_code == 429
    seller.clock.advance(0.1)
    assert (await seller.patch("A", availability(1))).status_code == 200
    assert (await seller.patch("A", availability(1))).status_code == 429


async def test_a_slow_operation_refills_slowly(seller: Seller) -> None:
    for _ in range(20):
        assert (await seller.search()).status_code == 200
    assert (await seller.search()).status_code == 429

    seller.clock.advance(170)  # 0.0056/s: one token takes about 179 s
    assert (await seller.search()).status_code == 429
    seller.clock.advance(10)
    await seller.login()
    assert (await seller.search()).status_code == 200


async def test_plans_can_be_overridden_and_buckets_refilled(seller: Seller) -> None:
    await seller.control("POST", "/faults", {"rates": {"searchOrders": {"rate": 100, "burst": 2}}})
    assert [(await seller.search()).status_code for _ in range(3)] == [200, 200, 429]

    await seller.control("POST", "/faults", {"refill": True})
    answer = await seller.search()
    assert answer.status_code == 200
    assert answer.headers["x-amzn-RateLimit-Limit"] == "0.0056"


async def test_injected_faults_are_counted_apart_from_throttling(seller: Seller) -> None:
    await seller.control(
        "POST", "/faults", {"next": {"searchOrders": ["5xx", "429"]}, "error_status": 500}
    )

    first, second, third = [await seller.search() for _ in range(3)]

    assert first.status_code == 500
    assert first.json()["errors"][0]["code"] == "InternalFailure"
    assert second.status_code == 429
    assert third.status_code == 200
    calls = await seller.control("GET", "/calls")
    assert calls["faulted"] == {"searchOrders": 2}
    assert calls["throttled"] == {}


async def test_unknown_operations_in_faults_are_refused_by_name(seller: Seller) -> None:
    answer = await seller.http.post("/_sandbox/faults", json={"next": {"getInventory": ["5xx"]}})

    assert answer.status_code == 422
    assert "getInventory" in answer.json()["error"]
