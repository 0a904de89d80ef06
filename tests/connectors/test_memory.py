"""The reference connector: its contract, its marketplace and every fault it can inject."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from connectors.base import (
    CancelRequest,
    Capabilities,
    Connector,
    FulfillmentRequest,
    OrderStatus,
    PushOutcome,
    ShipmentLine,
    StockTarget,
)
from connectors.errors import (
    AuthError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.memory import (
    CLOCK_START,
    FaultRates,
    MemoryConnector,
    MemoryMarketplace,
    OutOfStockError,
)

pytestmark = pytest.mark.anyio
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
SHIPPED_AT = datetime(2026, 1, 2, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def connect(
    market: MemoryMarketplace, capabilities: Capabilities | None = None, page_size: int = 50
) -> MemoryConnector:
    capabilities = capabilities or Capabilities()
    return MemoryConnector(
        market, name="memory-test", capabilities=capabilities, page_size=page_size
    )


def shipment(order_id: str, key: str = "S-1", tracking: str = "1Z999") -> FulfillmentRequest:
    return FulfillmentRequest(
        key=key,
        order_external_id=order_id,
        lines=[ShipmentLine(f"{order_id}-1", 1)],
        carrier="UPS",
        tracking_number=tracking,
        shipped_at=SHIPPED_AT,
    )


async def test_satisfies_the_connector_protocol() -> None:
    conn = connect(MemoryMarketplace())
    assert isinstance(conn, Connector)
    await conn.check_connection()
    await conn.aclose()
    assert conn.is_closed


async def test_pagination_to_the_end_returns_each_order_once() -> None:
    market = MemoryMarketplace()
    placed = [market.place_order([(f"SKU-{i % 3}", 1)]).external_id for i in range(23)]
    market.update(placed[0])  # moves the first order to the end of the sequence
    conn = connect(market, page_size=5)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await conn.fetch_orders(EPOCH, cursor)
        seen.extend(order.external_id for order in page.orders)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(placed)
    assert seen[-1] == placed[0]
    assert pages == 5
    assert market.calls["fetch_orders"] == 5


async def test_fetch_orders_filters_by_updated_since_inclusive() -> None:
    market = MemoryMarketplace()
    first = market.place_order([("A", 1)])
    second = market.place_order([("A", 1)])
    page = await connect(market).fetch_orders(second.updated_at, None)
    assert [order.external_id for order in page.orders] == [second.external_id]
    assert first.updated_at < second.updated_at
    with pytest.raises(PermanentError):
        await connect(market).fetch_orders(EPOCH, "not a cursor")


async def test_fetch_order_and_not_found() -> None:
    market = MemoryMarketplace()
    order = market.place_order([("A", 2)], external_id="X-1", buyer_ref="b-1")
    assert await connect(market).fetch_order("X-1") == order
    with pytest.raises(NotFoundError) as raised:
        await connect(market).fetch_order("missing")
    assert raised.value.channel == "memory-test"
    assert raised.value.operation == "fetch_order"


def test_place_order_lowers_stock_and_records_a_canonical_order() -> None:
    market = MemoryMarketplace(sku_of={"listing-a": "SKU-A"})
    market.set_stock("listing-a", 3)
    order = market.place_order([("listing-a", 2), ("B", 1)])
    assert order.status is OrderStatus.OPEN
    assert order.currency == "USD"
    assert order.updated_at == CLOCK_START
    assert [line.sku for line in order.lines] == ["SKU-A", "B"]
    assert order.total is not None and str(order.total.amount) == "30.00"
    assert market.stock_of("listing-a") == 1
    market.place_order([("listing-a", 5)])  # the channel oversells itself, never below zero
    assert market.snapshot() == {"listing-a": 0}


def test_a_marketplace_that_refuses_to_oversell() -> None:
    market = MemoryMarketplace(allow_oversell=False)
    market.set_stock("A", 1)
    with pytest.raises(OutOfStockError):
        market.place_order([("A", 2)])
    assert market.stock_of("A") == 1
    assert market.orders == {}


def test_order_changes_advance_updated_at_and_status() -> None:
    frozen = CLOCK_START
    market = MemoryMarketplace(clock=lambda: frozen)
    order = market.place_order([("A", 3)])
    line_id = order.lines[0].external_line_id
    shipped = market.ship_on_channel(order.external_id, {line_id: 1})
    assert shipped.status is OrderStatus.PARTIALLY_SHIPPED
    cancelled = market.cancel(order.external_id)
    assert cancelled.status is OrderStatus.SHIPPED  # the unshipped rest was cancelled
    assert cancelled.lines[0].quantity_cancelled == 2
    touched = market.update(order.external_id)
    assert order.updated_at < shipped.updated_at < cancelled.updated_at < touched.updated_at
    with pytest.raises(ValueError, match="already shipped"):
        market.cancel(order.external_id)


async def test_push_stock_applies_and_records_history() -> None:
    market = MemoryMarketplace()
    conn = connect(market, Capabilities(max_stock_batch=3))
    results = await conn.push_stock([StockTarget("A", 5), StockTarget("B", 2)])
    assert [r.outcome for r in results] == [PushOutcome.APPLIED, PushOutcome.APPLIED]
    await conn.push_stock([StockTarget("A", 4)])
    assert market.pushes == {"A": [5, 4], "B": [2]}
    assert market.batch_sizes == [2, 1]
    assert await conn.read_stock(["A", "B", "unknown"]) == {"A": 4, "B": 2}


async def test_compare_and_swap_conflict_applies_nothing_for_that_target() -> None:
    market = MemoryMarketplace()
    market.set_stock("A", 10)
    market.set_stock("B", 10)
    conn = connect(market, Capabilities(max_stock_batch=2, supports_compare_and_swap=True))

    def buyer_buys_meanwhile(targets: Sequence[StockTarget]) -> None:
        market.place_order([("A", 2)])  # units the engine has not ingested while it pushes

    market.faults.on_push = buyer_buys_meanwhile
    results = await conn.push_stock([StockTarget("A", 7, expected=10), StockTarget("B", 9, 10)])
    assert results[0].outcome is PushOutcome.CONFLICT
    assert results[0].actual == 8
    assert results[1].outcome is PushOutcome.APPLIED
    assert market.snapshot() == {"A": 8, "B": 9}
    assert "A" not in market.pushes


async def test_without_compare_and_swap_expected_is_ignored() -> None:
    market = MemoryMarketplace()
    market.set_stock("A", 10)
    results = await connect(market).push_stock([StockTarget("A", 3, expected=99)])
    assert results[0].outcome is PushOutcome.APPLIED
    assert market.stock_of("A") == 3


async def test_a_batch_over_the_maximum_is_refused() -> None:
    market = MemoryMarketplace()
    conn = connect(market, Capabilities(max_stock_batch=2))
    with pytest.raises(PermanentError, match="exceeds 2"):
        await conn.push_stock([StockTarget(ref, 1) for ref in "ABC"])
    assert market.snapshot() == {}
    assert market.batch_sizes == [3]


async def test_fail_after_applies_then_raises_uncertain_outcome() -> None:
    market = MemoryMarketplace()
    market.faults.per_operation["push_stock"] = FaultRates(fail_rate_after=1.0)
    with pytest.raises(UncertainOutcomeError):
        await connect(market).push_stock([StockTarget("A", 4)])
    assert market.stock_of("A") == 4


async def test_fail_before_applies_nothing() -> None:
    market = MemoryMarketplace()
    market.faults.fail_rate_before = 1.0
    with pytest.raises(RetryableError) as raised:
        await connect(market).push_stock([StockTarget("A", 4)])
    assert type(raised.value) is RetryableError
    assert market.snapshot() == {}


async def test_non_idempotent_resend_duplicates_and_find_finds_the_first() -> None:
    market = MemoryMarketplace()
    order = market.place_order([("A", 1)])
    conn = connect(market)
    request = shipment(order.external_id)
    market.faults.fail_next("push_fulfillment", UncertainOutcomeError("timeout"))
    with pytest.raises(UncertainOutcomeError):
        await conn.push_fulfillment(request)
    first = await conn.find_fulfillment(request)
    assert first == "F-1"
    assert await conn.push_fulfillment(request) == "F-2"  # a blind resend: recorded twice
    assert len(market.fulfillments_by_order()[order.external_id]) == 2
    assert await conn.find_fulfillment(request) == first
    assert market.order(order.external_id).status is OrderStatus.SHIPPED
    other_key = shipment(order.external_id, key="S-9")  # same tracking and lines, other key
    assert await conn.find_fulfillment(other_key) == first
    assert await conn.find_fulfillment(shipment(order.external_id, "S-9", "other")) is None


async def test_idempotent_channel_dedupes_by_key() -> None:
    market = MemoryMarketplace()
    order = market.place_order([("A", 1)])
    conn = connect(market, Capabilities(idempotent_fulfillment=True))
    request = shipment(order.external_id)
    assert await conn.push_fulfillment(request) == "F-1"
    assert await conn.push_fulfillment(request) == "F-1"
    assert len(market.fulfillments) == 1
    received = market.fulfillments[0]
    assert (received.carrier, received.tracking) == ("UPS", "1Z999")


async def test_push_fulfillment_validates_against_the_order() -> None:
    market = MemoryMarketplace()
    order = market.place_order([("A", 1)])
    conn = connect(market)
    with pytest.raises(NotFoundError):
        await conn.push_fulfillment(shipment("missing"))
    too_many = FulfillmentRequest(
        "S-2",
        order.external_id,
        [ShipmentLine(f"{order.external_id}-1", 2)],
        None,
        None,
        SHIPPED_AT,
    )
    with pytest.raises(PermanentError):
        await conn.push_fulfillment(too_many)
    market.faults.permanent_for[order.external_id] = "order on hold"
    with pytest.raises(PermanentError) as raised:
        await conn.push_fulfillment(shipment(order.external_id))
    assert raised.value.reason == "order on hold"
    assert market.fulfillments == []


async def test_cancel_order_is_idempotent_on_key_and_refused_once_shipped() -> None:
    market = MemoryMarketplace()
    conn = connect(market)
    order = market.place_order([("A", 2)])
    await conn.cancel_order(CancelRequest("C-1", order.external_id))
    cancelled = market.order(order.external_id)
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.updated_at > order.updated_at
    await conn.cancel_order(CancelRequest("C-1", order.external_id))
    assert len(market.cancels) == 1
    shipped = market.place_order([("A", 1)])
    market.ship_on_channel(shipped.external_id)
    with pytest.raises(PermanentError, match="already shipped"):
        await conn.cancel_order(CancelRequest("C-2", shipped.external_id))


async def test_throttling_raises_rate_limited_with_retry_after() -> None:
    market = MemoryMarketplace()
    market.faults.throttle_rate = 1.0
    market.faults.retry_after = 2.5
    with pytest.raises(RateLimitedError) as raised:
        await connect(market).read_stock(["A"])
    assert raised.value.retry_after == 2.5
    assert market.calls["read_stock"] == 1
    assert market.throttled["read_stock"] == 1


async def test_exceeding_max_in_flight_is_throttled() -> None:
    market = MemoryMarketplace()
    market.faults.latency = 0.01
    market.faults.max_in_flight = 2
    conn = connect(market)
    outcomes = await asyncio.gather(
        *(conn.read_stock(["A"]) for _ in range(3)), return_exceptions=True
    )
    assert sum(isinstance(o, RateLimitedError) for o in outcomes) == 1
    assert market.max_in_flight_seen == 3
    assert market.in_flight == 0
    market.max_in_flight_seen = 0
    for _ in range(3):
        await conn.read_stock(["A"])
    assert market.max_in_flight_seen == 1


async def test_auth_broken_and_queued_errors() -> None:
    market = MemoryMarketplace()
    conn = connect(market)
    market.faults.fail_next("check_connection", RateLimitedError("slow down"), times=2)
    for _ in range(2):
        with pytest.raises(RateLimitedError):
            await conn.check_connection()
    await conn.check_connection()
    market.faults.auth_broken = True
    with pytest.raises(AuthError):
        await conn.fetch_orders(EPOCH, None)
    with pytest.raises(ValueError, match="unknown operation"):
        market.faults.fail_next("push_stocks", RetryableError("typo"))


async def test_faults_are_deterministic_under_a_seeded_random() -> None:
    async def run(seed: int) -> list[str]:
        market = MemoryMarketplace(rng=random.Random(seed))
        market.faults.throttle_rate = 0.2
        market.faults.fail_rate_before = 0.2
        market.faults.fail_rate_after = 0.2
        conn = connect(market)
        outcomes = []
        for n in range(40):
            try:
                await conn.push_stock([StockTarget("A", n)])
                outcomes.append("ok")
            except RetryableError as err:
                outcomes.append(type(err).__name__)
        return outcomes

    first = await run(7)
    assert first == await run(7)
    assert {"ok", "RateLimitedError", "RetryableError", "UncertainOutcomeError"} == set(first)


def test_fake_clock_ticks_forward() -> None:
    market = MemoryMarketplace()
    first = market.place_order([("A", 1)])
    second = market.place_order([("A", 1)])
    assert second.updated_at - first.updated_at == timedelta(seconds=1)
