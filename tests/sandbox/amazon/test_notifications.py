"""ORDER_CHANGE notifications: one per order change, in the official schema, carrying the state
of its moment; duplicates keep their NotificationId; held notifications are released shuffled;
drops and the no-queue case are counted. (The SQS leg runs in test_loopback.py.)"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox.amazon import AmazonOptions, MemorySink, create_app
from tests.sandbox.amazon.conftest import US, Seller, schema_problems

pytestmark = pytest.mark.anyio

SCHEMA = "schemas/notifications/OrderChangeNotification.json"


def _change(message: dict[str, Any]) -> dict[str, Any]:
    change: dict[str, Any] = message["Payload"]["OrderChangeNotification"]
    return change


async def test_every_order_change_sends_a_notification_in_the_official_schema(
    seller: Seller,
) -> None:
    await seller.list(A=5)
    placed = await seller.order(pending=True, A=2)
    order_id, item = placed["order_id"], placed["items"][0]["order_item_id"]
    await seller.control("POST", "/payment", {"order_id": order_id})
    await seller.control("POST", "/cancel", {"order_id": order_id, "buyer_request": True})
    await seller.api(
        "POST",
        f"/orders/v0/orders/{order_id}/shipmentConfirmation",
        json={
            "marketplaceId": US,
            "packageDetail": {
                "packageReferenceId": "1",
                "carrierCode": "UPS",
                "trackingNumber": "1Z",
                "shipDate": "2026-05-01T11:00:00Z",
                "orderItems": [{"orderItemId": item, "quantity": 2}],
            },
        },
    )
    await seller.settle()

    messages = seller.sink.messages()
    for message in messages:
        assert schema_problems(SCHEMA, message) == []
    changes = [_change(m) for m in messages]
    assert [(c["OrderChangeType"], c["Summary"]["OrderStatus"]) for c in changes] == [
        ("OrderStatusChange", "Pending"),
        ("OrderStatusChange", "Unshipped"),
        ("BuyerRequestedChange", "Unshipped"),
        ("OrderStatusChange", "Shipped"),
    ]
    assert {c["AmazonOrderId"] for c in changes} == {order_id}
    assert changes[0]["SellerId"] == "A1SANDBOXSELLER"
    assert changes[0]["Summary"]["DestinationPostalCode"] == "98101"
    assert changes[2]["Summary"]["OrderItems"][0]["IsBuyerRequestedCancel"] is True
    shipped = changes[3]["Summary"]
    assert (shipped["NumberOfItemsShipped"], shipped["NumberOfItemsUnshipped"]) == (2, 0)
    assert len({m["NotificationMetadata"]["NotificationId"] for m in messages}) == 4
    times = [c["OrderChangeTrigger"]["TimeOfOrderChange"] for c in changes]
    assert times == sorted(times) and len(set(times)) == 4


async def test_duplicates_share_the_notification_id(seller: Seller) -> None:
    await seller.list(A=100)
    await seller.control("POST", "/faults", {"seed": 7, "notifications": {"duplicate_rate": 0.5}})
    for _ in range(20):
        await seller.order(A=1)
    await seller.settle()

    ids = [m["NotificationMetadata"]["NotificationId"] for m in seller.sink.messages()]
    counts = (await seller.control("GET", "/notifications"))["counts"]
    assert len(set(ids)) == 20
    assert len(ids) == 20 + counts["duplicated"]
    assert 0 < counts["duplicated"] < 20


async def test_held_notifications_are_released_in_a_shuffled_order(seller: Seller) -> None:
    await seller.list(A=100)
    await seller.control("POST", "/faults", {"seed": 3, "notifications": {"hold": True}})
    placed = [(await seller.order(A=1))["order_id"] for _ in range(10)]
    await seller.settle()
    assert seller.sink.bodies == []
    assert (await seller.control("GET", "/notifications"))["held"] == 10

    released = await seller.control("POST", "/notifications/release")
    await seller.settle()

    assert released == {"released": 10}
    order_ids = [_change(m)["AmazonOrderId"] for m in seller.sink.messages()]
    assert sorted(order_ids) == sorted(placed)
    assert order_ids != placed


async def test_dropped_and_unsent_notifications_are_counted(seller: Seller) -> None:
    await seller.list(A=10)
    await seller.control("POST", "/faults", {"notifications": {"drop_rate": 1.0}})
    await seller.order(A=1)
    await seller.settle()

    assert seller.sink.bodies == []
    described = await seller.control("GET", "/notifications")
    assert described["counts"] == {"created": 1, "dropped": 1}
    assert described["notifications"][0]["state"] == "dropped"
    assert "DestinationPostalCode" not in str(described)


async def test_without_a_queue_notifications_are_only_recorded() -> None:
    app = create_app(AmazonOptions())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://amazon"
    ) as http:
        await http.post("/_sandbox/listings", json={"listings": [{"sku": "A", "quantity": 1}]})
        await http.post("/_sandbox/orders", json={"lines": [{"sku": "A", "quantity": 1}]})
        described = (await http.get("/_sandbox/notifications")).json()
    await app.state.sandbox.aclose()

    assert described["counts"] == {"created": 1, "unsent": 1}


async def test_a_failing_queue_is_retried_then_counted_failed(seller: Seller) -> None:
    class Broken(MemorySink):
        async def send(self, body: str) -> None:
            raise ConnectionError("queue down")

    await seller.list(A=10)
    seller.sandbox.notifier.sink = Broken()
    seller.sandbox.notifier.retry_delays_s = (0.0, 0.0)
    await seller.order(A=1)
    await seller.settle()

    (notice,) = (await seller.control("GET", "/notifications"))["notifications"]
    assert notice["state"] == "failed"
    assert notice["attempts"] == 3
