"""confirmShipment as Amazon takes it: packages recorded with tracking and the order's status
moving on, an identical repeat absorbed, what is refused with the reason named, a lost write that
answers 204 all the same; and the buyer's and the seller's cancellations."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.sandbox.amazon.conftest import US, Seller

pytestmark = pytest.mark.anyio


def _package(items: list[tuple[str, int]], **detail: Any) -> dict[str, Any]:
    package = {
        "packageReferenceId": "1",
        "carrierCode": "UPS",
        "shippingMethod": "Ground",
        "trackingNumber": "1Z999",
        "shipDate": "2026-05-01T11:00:00Z",
        "orderItems": [{"orderItemId": item_id, "quantity": n} for item_id, n in items],
        **detail,
    }
    return {"marketplaceId": US, "packageDetail": package}


async def _confirm(seller: Seller, order_id: str, body: dict[str, Any]) -> httpx.Response:
    return await seller.api("POST", f"/orders/v0/orders/{order_id}/shipmentConfirmation", json=body)


async def _status(seller: Seller, order_id: str) -> str:
    answer = await seller.api(
        "GET", f"/orders/2026-01-01/orders/{order_id}", params={"includedData": "FULFILLMENT"}
    )
    status: str = answer.json()["order"]["fulfillment"]["fulfillmentStatus"]
    return status


async def test_a_confirmed_package_ships_the_order_and_shows_its_tracking(seller: Seller) -> None:
    await seller.list(A=5, B=5)
    placed = await seller.order(A=2, B=1)
    a, b = (item["order_item_id"] for item in placed["items"])

    partial = await _confirm(seller, placed["order_id"], _package([(a, 2)]))
    assert partial.status_code == 204
    assert partial.content == b""
    assert await _status(seller, placed["order_id"]) == "PARTIALLY_SHIPPED"

    rest = await _confirm(
        seller,
        placed["order_id"],
        _package(
            [(b, 1)], packageReferenceId="2", carrierCode="Other", carrierName="Local Couriers"
        ),
    )
    assert rest.status_code == 204
    assert await _status(seller, placed["order_id"]) == "SHIPPED"

    shipped = (await seller.control("GET", "/fulfillments"))["fulfillments"]
    assert [(f["package_reference_id"], f["tracking_number"], f["items"]) for f in shipped] == [
        ("1", "1Z999", [{"order_item_id": a, "sku": "A", "quantity": 2}]),
        ("2", "1Z999", [{"order_item_id": b, "sku": "B", "quantity": 1}]),
    ]
    assert [f["carrier_recognised"] for f in shipped] == [True, False]
    packages = await seller.api(
        "GET",
        f"/orders/2026-01-01/orders/{placed['order_id']}",
        params={"includedData": "PACKAGES"},
    )
    assert [p["trackingNumber"] for p in packages.json()["order"]["packages"]] == ["1Z999", "1Z999"]


async def test_an_identical_repeat_is_absorbed_a_conflicting_one_refused(seller: Seller) -> None:
    await seller.list(A=5)
    placed = await seller.order(A=1)
    item = placed["items"][0]["order_item_id"]
    body = _package([(item, 1)])

    assert (await _confirm(seller, placed["order_id"], body)).status_code == 204
    assert (await _confirm(seller, placed["order_id"], body)).status_code == 204
    conflicting = await _confirm(
        seller, placed["order_id"], _package([(item, 1)], trackingNumber="9")
    )

    assert conflicting.status_code == 400
    assert "already confirmed" in conflicting.json()["errors"][0]["message"]
    (shipment,) = (await seller.control("GET", "/fulfillments"))["fulfillments"]
    assert shipment["confirmations"] == 2


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"carrierCode": "Other"}, "carrierName is required"),
        ({"shipDate": "02/21/2022"}, "shipDate"),
        ({"quantity": 3}, "left to ship"),
        ({"orderItemId": "00000000000000"}, "not an item of this order"),
        ({"marketplaceId": "A2EUQ1WTGCTBG2"}, "marketplace"),
    ],
)
async def test_what_amazon_refuses_is_named(
    seller: Seller, change: dict[str, Any], named: str
) -> None:
    await seller.list(A=5)
    placed = await seller.order(A=2)
    item = change.pop("orderItemId", placed["items"][0]["order_item_id"])
    units = change.pop("quantity", 2)
    market = change.pop("marketplaceId", US)
    body = _package([(item, units)], **change)
    body["marketplaceId"] = market

    answer = await _confirm(seller, placed["order_id"], body)

    assert answer.status_code == 400, answer.text
    assert named in answer.json()["errors"][0]["message"]
    assert (await seller.control("GET", "/fulfillments"))["fulfillments"] == []


async def test_unknown_orders_fba_orders_and_cancelled_orders_are_refused(seller: Seller) -> None:
    await seller.list(A=5)
    await seller.control(
        "POST",
        "/listings",
        {"listings": [{"sku": "F", "quantity": 5, "fulfillment_channel": "AMAZON_NA"}]},
    )
    fba = await seller.order(F=1)
    cancelled = await seller.order(A=1)
    await seller.control("POST", "/cancel", {"order_id": cancelled["order_id"]})

    missing = await _confirm(seller, "113-0000000-0000000", _package([("1", 1)]))
    by_amazon = await _confirm(
        seller, fba["order_id"], _package([(fba["items"][0]["order_item_id"], 1)])
    )
    gone = await _confirm(
        seller, cancelled["order_id"], _package([(cancelled["items"][0]["order_item_id"], 1)])
    )

    assert missing.status_code == 404
    assert "fulfilled by Amazon" in by_amazon.json()["errors"][0]["message"]
    assert "cancelled" in gone.json()["errors"][0]["message"]


async def test_a_lost_confirmation_answers_204_and_leaves_the_order_unshipped(
    seller: Seller,
) -> None:
    await seller.list(A=5)
    placed = await seller.order(A=1)
    await seller.control("POST", "/faults", {"next": {"confirmShipment": ["lost"]}})

    answer = await _confirm(
        seller, placed["order_id"], _package([(placed["items"][0]["order_item_id"], 1)])
    )

    assert answer.status_code == 204
    assert await _status(seller, placed["order_id"]) == "UNSHIPPED"
    assert (await seller.control("GET", "/fulfillments"))["fulfillments"] == []
    assert (await seller.control("GET", "/calls"))["faulted"] == {"confirmShipment": 1}


async def test_a_cancellation_gives_the_units_back_a_buyer_request_only_flags(
    seller: Seller,
) -> None:
    await seller.list(A=5)
    placed = await seller.order(A=2)

    await seller.control("POST", "/cancel", {"order_id": placed["order_id"], "buyer_request": True})
    flagged = await seller.api(
        "GET",
        f"/orders/2026-01-01/orders/{placed['order_id']}",
        params={"includedData": "CANCELLATION,FULFILLMENT"},
    )
    assert flagged.json()["order"]["fulfillment"]["fulfillmentStatus"] == "UNSHIPPED"
    item = flagged.json()["order"]["orderItems"][0]
    assert item["cancellation"]["cancellationRequest"]["requester"] == "BUYER"
    assert await seller.control("GET", "/inventory") == {"A": 3}

    await seller.control("POST", "/cancel", {"order_id": placed["order_id"]})
    assert await _status(seller, placed["order_id"]) == "CANCELLED"
    assert await seller.control("GET", "/inventory") == {"A": 5}
    again = await seller.http.post("/_sandbox/cancel", json={"order_id": placed["order_id"]})
    assert again.status_code == 409
