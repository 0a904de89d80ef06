"""The reference connector against a mocked transport: requests, mapping, errors, retries."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from connectors.base import (
    CancelRequest,
    Capabilities,
    Connector,
    FulfillmentRequest,
    Money,
    OrderStatus,
    PushOutcome,
    ShipmentLine,
    StockPushResult,
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
from connectors.reference import ReferenceConnector, ReferenceSettings

pytestmark = pytest.mark.anyio
BASE = "http://sandbox.test/shop"
TOKEN = "mock-token-7c2e"
SHIPPED_AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    """A MockTransport that records requests and answers with `handler`; sleeps are recorded."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests]


def connect(
    handler: Handler,
    *,
    attempts: int = 3,
    page_size: int = 2,
    **caps: Any,
) -> tuple[ReferenceConnector, Recorder]:
    recorder = Recorder(handler)
    capabilities = Capabilities(**{"max_stock_batch": 3, **caps})
    connector = ReferenceConnector(
        "shop",
        ReferenceSettings(BASE, TOKEN, capabilities, timeout_s=1.0, page_size=page_size),
        transport=httpx.MockTransport(recorder),
        attempts=attempts,
        sleep=recorder.sleep,
    )
    return connector, recorder


def raw_order(order_id: str = "O-1", **changes: Any) -> dict[str, Any]:
    order = {
        "id": order_id,
        "number": "#1",
        "status": "partially_fulfilled",
        "currency": "EUR",
        "total": "30.10",
        "created_at": "2026-02-01T10:00:00Z",
        "updated_at": "2026-02-01T10:05:00.000001Z",
        "buyer_id": "B-1",
        "ship_to": {"name": "Ada Buyer", "city": "Lyon", "country_code": "FR"},
        "lines": [
            {
                "id": f"{order_id}-1",
                "listing": "L-A",
                "sku": "A",
                "quantity": 3,
                "cancelled": 1,
                "shipped": 1,
                "unit_price": "10.05",
            }
        ],
        "fulfillments": [
            {
                "id": "FUL-1",
                "order_id": order_id,
                "lines": [{"line_id": f"{order_id}-1", "quantity": 1}],
                "carrier": "DHL",
                "tracking_number": "JD1",
                "tracking_url": None,
                "shipped_at": "2026-02-01T10:04:00Z",
            }
        ],
    }
    order.update(changes)
    return order


def fulfillment(key: str = "ship-1", tracking: str | None = "1Z9") -> FulfillmentRequest:
    return FulfillmentRequest(
        key=key,
        order_external_id="O-1",
        lines=[ShipmentLine("O-1-1", 2)],
        carrier="UPS",
        tracking_number=tracking,
        shipped_at=SHIPPED_AT,
    )


def answer(status: int, body: object = None, **headers: str) -> Handler:
    return lambda request: httpx.Response(status, json=body, headers=headers)


# ---- the protocol and the mapping ------------------------------------------------------------


async def test_it_is_a_connector_with_the_configured_capabilities() -> None:
    connector, _ = connect(answer(200, {}), supports_compare_and_swap=True, max_in_flight=2)
    assert isinstance(connector, Connector)
    assert connector.capabilities.supports_compare_and_swap
    assert connector.capabilities.max_in_flight == 2
    assert TOKEN not in repr(ReferenceSettings(BASE, TOKEN, Capabilities()))


async def test_an_order_maps_to_the_canonical_shape_with_its_fulfilments() -> None:
    connector, recorder = connect(answer(200, raw_order()))
    order = await connector.fetch_order("O-1")

    assert recorder.requests[0].url == f"{BASE}/v1/orders/O-1"
    assert recorder.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert order.status is OrderStatus.PARTIALLY_SHIPPED
    assert order.updated_at == datetime(2026, 2, 1, 10, 5, 0, 1, tzinfo=UTC)
    assert order.total == Money(Decimal("30.10"), "EUR")
    line = order.lines[0]
    assert (line.sku, line.quantity, line.quantity_cancelled, line.quantity_shipped) == (
        "A",
        3,
        1,
        1,
    )
    assert line.unit_price == Money(Decimal("10.05"), "EUR")
    assert line.extra == {"listing_ref": "L-A"}
    assert order.ship_to is not None and order.ship_to.city == "Lyon"
    assert order.buyer_ref == "B-1"
    (shipment,) = order.shipments
    assert (shipment.external_id, shipment.carrier, shipment.tracking_number) == (
        "FUL-1",
        "DHL",
        "JD1",
    )
    assert [(s.external_line_id, s.quantity) for s in shipment.lines] == [("O-1-1", 1)]


async def test_fetch_orders_pages_with_the_channel_cursor() -> None:
    pages = {
        None: {"orders": [raw_order("O-1"), raw_order("O-2")], "next_cursor": "c1"},
        "c1": {"orders": [raw_order("O-3")], "next_cursor": None},
    }
    connector, recorder = connect(
        lambda r: httpx.Response(200, json=pages[r.url.params.get("cursor")])
    )
    since = datetime(2026, 1, 1, tzinfo=UTC)
    first = await connector.fetch_orders(since, None)
    second = await connector.fetch_orders(since, first.next_cursor)

    assert [o.external_id for o in first.orders] == ["O-1", "O-2"]
    assert first.next_cursor == "c1"
    assert [o.external_id for o in second.orders] == ["O-3"]
    assert second.next_cursor is None
    params = [dict(r.url.params) for r in recorder.requests]
    assert params == [
        {"updated_since": "2026-01-01T00:00:00+00:00", "limit": "2"},
        {"updated_since": "2026-01-01T00:00:00+00:00", "limit": "2", "cursor": "c1"},
    ]


async def test_a_malformed_order_is_left_out_and_logged_without_its_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad_money = raw_order("O-2", total=12.5)
    bad_status = raw_order("O-3", status="teleported")
    no_lines = {k: v for k, v in raw_order("O-4").items() if k != "lines"}
    page = {"orders": [raw_order("O-1"), bad_money, bad_status, no_lines], "next_cursor": None}
    connector, _ = connect(answer(200, page))
    with caplog.at_level(logging.WARNING):
        result = await connector.fetch_orders(datetime(2026, 1, 1, tzinfo=UTC), None)

    assert [o.external_id for o in result.orders] == ["O-1"]
    logged = caplog.text
    assert "O-2" in logged and "total must be a decimal string" in logged
    assert "O-3" in logged and "teleported" in logged
    assert "O-4" in logged and "missing field 'lines'" in logged
    assert "Ada Buyer" not in logged and "Lyon" not in logged


async def test_list_listings_follows_the_cursor_to_the_end() -> None:
    pages = {
        None: {"listings": [{"listing": "L-A", "sku": "A", "quantity": 1}], "next_cursor": "x"},
        "x": {"listings": [{"listing": "L-B", "sku": "B", "quantity": 0}], "next_cursor": None},
    }
    connector, recorder = connect(
        lambda r: httpx.Response(200, json=pages[r.url.params.get("cursor")])
    )
    listings = await connector.list_listings()
    assert [(x.listing_ref, x.sku, x.quantity) for x in listings] == [
        ("L-A", "A", 1),
        ("L-B", "B", 0),
    ]
    assert len(recorder.requests) == 2


async def test_read_stock_asks_at_most_100_listings_a_call() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        refs = request.url.params.get_list("listing")
        return httpx.Response(200, json={"stock": {ref: 1 for ref in refs if ref != "L-7"}})

    connector, recorder = connect(handler)
    refs = [f"L-{n}" for n in range(150)]
    shown = await connector.read_stock(refs)

    assert [len(r.url.params.get_list("listing")) for r in recorder.requests] == [100, 50]
    assert set(shown) == set(refs) - {"L-7"}


# ---- stock ---------------------------------------------------------------------------------


async def test_compare_and_swap_sends_expected_and_maps_each_result() -> None:
    results = [
        {"listing": "L-A", "status": "applied", "quantity": 4},
        {"listing": "L-B", "status": "conflict", "quantity": 1},
        {"listing": "L-C", "status": "rejected", "reason": "no such listing"},
    ]
    connector, recorder = connect(answer(200, {"results": results}), supports_compare_and_swap=True)
    targets = [
        StockTarget("L-A", 4, expected=5),
        StockTarget("L-B", 2, expected=3),
        StockTarget("L-C", 0),
    ]
    answered = await connector.push_stock(targets)

    assert recorder.bodies() == [
        {
            "items": [
                {"listing": "L-A", "quantity": 4, "expected": 5},
                {"listing": "L-B", "quantity": 2, "expected": 3},
                {"listing": "L-C", "quantity": 0},
            ]
        }
    ]
    assert list(answered) == [
        StockPushResult("L-A", PushOutcome.APPLIED),
        StockPushResult("L-B", PushOutcome.CONFLICT, actual=1),
        StockPushResult("L-C", PushOutcome.REJECTED, error="no such listing"),
    ]


async def test_without_compare_and_swap_expected_is_not_sent_and_a_missing_result_retries() -> None:
    results = [{"listing": "L-A", "status": "applied", "quantity": 4}]
    connector, recorder = connect(answer(200, {"results": results}))
    answered = await connector.push_stock(
        [StockTarget("L-A", 4, expected=5), StockTarget("L-B", 1)]
    )
    assert recorder.bodies()[0]["items"][0] == {"listing": "L-A", "quantity": 4}
    assert [r.outcome for r in answered] == [PushOutcome.APPLIED, PushOutcome.RETRY]


async def test_a_batch_past_the_limit_is_refused_without_a_call() -> None:
    connector, recorder = connect(answer(200, {"results": []}))
    with pytest.raises(PermanentError, match="exceeds 3"):
        await connector.push_stock([StockTarget(f"L-{n}", 1) for n in range(4)])
    assert recorder.requests == []


# ---- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthError), (403, AuthError), (404, NotFoundError), (409, PermanentError)],
)
async def test_statuses_map_to_the_error_tree(status: int, error: type[Exception]) -> None:
    connector, recorder = connect(answer(status, {"error": "x", "message": "nope"}))
    with pytest.raises(error) as caught:
        await connector.fetch_order("O-1")
    assert len(recorder.requests) == 1
    assert TOKEN not in str(caught.value)


async def test_422_is_a_permanent_error_carrying_the_channel_reason() -> None:
    connector, _ = connect(answer(422, {"error": "refused", "message": "order is on hold"}))
    with pytest.raises(PermanentError) as caught:
        await connector.push_fulfillment(fulfillment())
    assert caught.value.reason == "order is on hold"
    with pytest.raises(PermanentError) as caught:
        await connector.cancel_order(CancelRequest("c-1", "O-1"))
    assert caught.value.reason == "order is on hold"


async def test_429_is_rate_limited_with_the_channel_retry_after() -> None:
    connector, _ = connect(answer(429, {"error": "throttled"}, **{"Retry-After": "2"}), attempts=1)
    with pytest.raises(RateLimitedError) as caught:
        await connector.read_stock(["L-A"])
    assert caught.value.retry_after == 2.0


async def test_a_throttled_call_is_retried_no_sooner_than_retry_after() -> None:
    answers = iter(
        [
            httpx.Response(429, json={}, headers={"Retry-After": "3"}),
            httpx.Response(200, json={"stock": {"L-A": 5}}),
        ]
    )
    connector, recorder = connect(lambda r: next(answers))
    assert await connector.read_stock(["L-A"]) == {"L-A": 5}
    assert len(recorder.requests) == 2
    assert sum(recorder.sleeps) >= 3.0


async def test_503_is_retryable_and_retried_until_the_channel_answers() -> None:
    answers = iter([httpx.Response(503, json={}), httpx.Response(200, json={"channel": "shop"})])
    connector, recorder = connect(lambda r: next(answers))
    await connector.check_connection()
    assert len(recorder.requests) == 2

    connector, recorder = connect(answer(503, {}), attempts=2)
    with pytest.raises(RetryableError) as caught:
        await connector.check_connection()
    assert not isinstance(caught.value, RateLimitedError | UncertainOutcomeError)
    assert len(recorder.requests) == 2


def lose_answer(error: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("the answer was lost", request=request)

    return handler


@pytest.mark.parametrize("lost", [httpx.RemoteProtocolError, httpx.ReadTimeout, httpx.ReadError])
async def test_a_lost_answer_to_a_write_is_uncertain_and_never_resent(
    lost: type[httpx.TransportError],
) -> None:
    connector, recorder = connect(lose_answer(lost))
    with pytest.raises(UncertainOutcomeError):
        await connector.push_fulfillment(fulfillment())
    with pytest.raises(UncertainOutcomeError):
        await connector.push_stock([StockTarget("L-A", 1)])
    with pytest.raises(UncertainOutcomeError):
        await connector.cancel_order(CancelRequest("c-1", "O-1"))
    assert len(recorder.requests) == 3


async def test_a_connection_refused_is_retryable_not_uncertain() -> None:
    connector, recorder = connect(lose_answer(httpx.ConnectError), attempts=2)
    with pytest.raises(RetryableError) as caught:
        await connector.push_fulfillment(fulfillment())
    assert not isinstance(caught.value, UncertainOutcomeError)
    assert len(recorder.requests) == 2


async def test_a_lost_answer_to_a_read_is_resent() -> None:
    answers: list[Handler] = [
        lose_answer(httpx.ReadTimeout),
        answer(200, {"fulfillments": []}),
    ]
    connector, recorder = connect(lambda r: answers.pop(0)(r))
    assert await connector.find_fulfillment(fulfillment()) is None
    assert len(recorder.requests) == 2


# ---- fulfilments -----------------------------------------------------------------------------


async def test_a_fulfilment_carries_our_key_and_an_idempotent_channel_gets_it_resent() -> None:
    answers: list[Handler] = [
        lose_answer(httpx.RemoteProtocolError),
        answer(200, {"fulfillment": {"id": "FUL-7"}}),
    ]
    connector, recorder = connect(lambda r: answers.pop(0)(r), idempotent_fulfillment=True)
    assert await connector.push_fulfillment(fulfillment(key="ship-42")) == "FUL-7"

    assert len(recorder.requests) == 2
    for request in recorder.requests:
        assert request.method == "POST"
        assert request.url == f"{BASE}/v1/orders/O-1/fulfillments"
        assert request.headers["Idempotency-Key"] == "ship-42"
    assert recorder.bodies()[0] == {
        "lines": [{"line_id": "O-1-1", "quantity": 2}],
        "shipped_at": "2026-03-01T12:00:00+00:00",
        "carrier": "UPS",
        "tracking_number": "1Z9",
    }


async def test_find_fulfillment_matches_key_or_tracking_and_lines() -> None:
    def listed(*found: dict[str, Any]) -> Handler:
        return answer(200, {"fulfillments": list(found)})

    def parcel(fid: str, tracking: str | None, units: int, key: str | None = None) -> Any:
        shown = {
            "id": fid,
            "lines": [{"line_id": "O-1-1", "quantity": units}],
            "tracking_number": tracking,
            "shipped_at": "2026-03-01T12:00:00Z",
        }
        return shown if key is None else {**shown, "idempotency_key": key}

    cases = [
        (listed(parcel("F-1", "1Z9", 2)), "F-1"),
        (listed(parcel("F-1", "OTHER", 2)), None),
        (listed(parcel("F-1", "1Z9", 1)), None),
        (listed(parcel("F-1", "1Z9", 1), parcel("F-2", "X", 5, key="ship-1")), "F-2"),
        (listed(), None),
    ]
    for handler, expected in cases:
        connector, recorder = connect(handler)
        assert await connector.find_fulfillment(fulfillment()) == expected
        assert recorder.requests[0].url == f"{BASE}/v1/orders/O-1/fulfillments"


async def test_cancel_sends_lines_or_the_whole_order() -> None:
    connector, recorder = connect(answer(200, {"order": raw_order()}))
    await connector.cancel_order(CancelRequest("c-1", "O-1", [ShipmentLine("O-1-1", 1)], "oos"))
    await connector.cancel_order(CancelRequest("c-2", "O-1"))
    assert recorder.bodies() == [
        {"reason": "oos", "lines": [{"line_id": "O-1-1", "quantity": 1}]},
        {"reason": "other"},
    ]
    assert [r.headers["Idempotency-Key"] for r in recorder.requests] == ["c-1", "c-2"]
    assert all(r.url == f"{BASE}/v1/orders/O-1/cancel" for r in recorder.requests)


async def test_the_token_is_masked_in_debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    connector, _ = connect(answer(200, {"channel": "shop"}))
    with caplog.at_level(logging.DEBUG, logger="connectors.http"):
        await connector.check_connection()
    assert TOKEN not in caplog.text
    assert "/v1/account" in caplog.text
