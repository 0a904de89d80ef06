"""Per-API daily quotas, getRateLimits, and the fault knobs: 5xx and throttles apply nothing,
a timeout applies the call and holds its answer."""

from __future__ import annotations

import time
from typing import Any

import pytest

from sandbox.ebay.const import API_SCOPE
from tests.sandbox.ebay.conftest import Account

pytestmark = pytest.mark.anyio
ORDERS = "/sell/fulfillment/v1/order"


async def test_a_used_up_quota_refuses_calls_until_the_next_day(account: Account) -> None:
    await account.control("POST", "/quotas", {"quotas": {"fulfillment": 2}})
    token = await account.token()
    for _ in range(2):
        assert (await account.rest("GET", ORDERS, token=token)).status_code == 200
    refused = await account.rest("GET", ORDERS, token=token)
    assert refused.status_code == 429
    assert refused.json()["errors"][0]["errorId"] == 2001
    assert (
        await account.rest("GET", "/sell/inventory/v1/inventory_item", token=token)
    ).status_code == 200
    calls = await account.control("GET", "/calls")
    assert calls["calls"]["getOrders"] == 3 and calls["throttled"] == {"getOrders": 1}

    account.clock.advance(12 * 3600)
    assert (await account.rest("GET", ORDERS)).status_code == 200


async def test_trading_past_its_quota_answers_error_518(account: Account) -> None:
    await account.seed({"sku": "A", "quantity": 1})
    await account.control("POST", "/quotas", {"quotas": {"trading": 10}, "used": {"trading": 10}})
    inner = "<InventoryStatus><SKU>A</SKU><Quantity>5</Quantity></InventoryStatus>"
    response = await account.trading("ReviseInventoryStatus", inner)
    assert response.status_code == 200
    assert "<Ack>Failure</Ack>" in response.text and "<ErrorCode>518</ErrorCode>" in response.text
    assert await account.control("GET", "/inventory") == {"A": 1}


async def test_get_rate_limits_shows_todays_use(account: Account) -> None:
    await account.rest("GET", ORDERS)
    app_token = await account.token("client_credentials", scope=API_SCOPE)
    response = await account.rest(
        "GET",
        "/developer/analytics/v1_beta/rate_limit/",
        token=app_token,
        params={"api_context": "sell", "api_name": "fulfillment"},
    )
    (limits,) = response.json()["rateLimits"]
    (rate,) = limits["resources"][0]["rates"]
    assert rate == {
        "count": 1,
        "limit": 100_000,
        "remaining": 99_999,
        "reset": "2026-05-02T00:00:00.000Z",
        "timeWindow": 86400,
    }


async def test_5xx_and_throttles_apply_nothing(account: Account) -> None:
    await account.seed(
        {"sku": "I", "quantity": 1, "world": "inventory"}, {"sku": "T", "quantity": 1}
    )
    await account.control(
        "POST",
        "/faults",
        {"next": {"bulkUpdatePriceQuantity": ["5xx", "429"], "ReviseInventoryStatus": ["5xx"]}},
    )
    body = {"requests": [{"sku": "I", "shipToLocationAvailability": {"quantity": 5}}]}
    failed = await account.rest("POST", "/sell/inventory/v1/bulk_update_price_quantity", json=body)
    assert failed.status_code == 500 and failed.json()["errors"][0]["category"] == "APPLICATION"
    throttled = await account.rest(
        "POST", "/sell/inventory/v1/bulk_update_price_quantity", json=body
    )
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1"
    trading = await account.trading(
        "ReviseInventoryStatus",
        "<InventoryStatus><SKU>T</SKU><Quantity>5</Quantity></InventoryStatus>",
    )
    assert trading.status_code == 500 and "<ErrorCode>10007</ErrorCode>" in trading.text
    assert await account.control("GET", "/inventory") == {"I": 1, "T": 1}
    calls = await account.control("GET", "/calls")
    assert calls["faulted"] == {"ReviseInventoryStatus": 1, "bulkUpdatePriceQuantity": 1}
    assert calls["throttled"] == {"bulkUpdatePriceQuantity": 1}


async def test_a_timeout_applies_the_call_and_holds_the_answer(account: Account) -> None:
    await account.seed({"sku": "A", "quantity": 5})
    placed = await account.order(A=1)
    await account.control(
        "POST",
        "/faults",
        {"next": {"createShippingFulfillment": ["timeout"]}, "timeout_delay_s": 0.3},
    )
    body = {
        "lineItems": [{"lineItemId": placed["line_items"][0]["line_item_id"], "quantity": 1}],
        "shippingCarrierCode": "USPS",
        "trackingNumber": "9400",
    }
    started = time.monotonic()
    response = await account.rest(
        "POST", f"{ORDERS}/{placed['order_id']}/shipping_fulfillment", json=body
    )
    assert time.monotonic() - started >= 0.3  # held (a real client has given up by then)
    assert response.status_code == 201
    assert len((await account.control("GET", "/fulfillments"))["fulfillments"]) == 1


async def test_fault_settings_are_strict(account: Account) -> None:
    for body in (
        {"operations": {"placeOrder": {"error_rate": 0.5}}},
        {"default": {"error_rate": 2}},
        {"notifications": {"drop": 0.5}},
    ):
        response = await account.http.post("/_sandbox/faults", json=body)
        assert response.status_code == 422, body
    shown: dict[str, Any] = await account.control("GET", "/faults")
    assert shown["default"]["error_rate"] == 0.0


async def test_a_seeded_error_rate_repeats(make_account: Any) -> None:
    outcomes = []
    for _ in range(2):
        account = await make_account()
        await account.control(
            "POST", "/faults", {"seed": 7, "operations": {"getOrders": {"error_rate": 0.5}}}
        )
        token = await account.token()
        outcomes.append(
            [(await account.rest("GET", ORDERS, token=token)).status_code for _ in range(12)]
        )
    assert outcomes[0] == outcomes[1] and {200, 500} == set(outcomes[0])
