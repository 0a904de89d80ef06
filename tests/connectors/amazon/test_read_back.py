"""Reading confirmed shipments back (connectors/read_back.py), and the pacing kept under Amazon's.

A confirmation Amazon drops leaves the order unchanged, so searchOrders never returns it again:
the connector re-reads such orders with getOrder once the grace period ran out, and again once
per grace period while they stay unseen, and makes no call while nothing is due.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.amazon import const
from connectors.base import FulfillmentRequest, ShipmentLine
from connectors.read_back import ConfirmationsMayLag
from tests.connectors.amazon.fake_amazon import ORDER_ID, FakeAmazon, connector, error, order

pytestmark = pytest.mark.anyio
GRACE = timedelta(minutes=2)


def shipment(order_id: str = ORDER_ID) -> FulfillmentRequest:
    return FulfillmentRequest(
        key=f"ship-{order_id}",
        order_external_id=order_id,
        lines=[ShipmentLine("11111111111111", 2)],
        carrier="UPS",
        tracking_number="1Z999",
        shipped_at=datetime(2026, 2, 2, 9, 0, tzinfo=UTC),
    )


def shipped_order(order_id: str = ORDER_ID) -> dict[str, Any]:
    raw = order(order_id, fulfillment={"fulfillmentStatus": "SHIPPED", "fulfilledBy": "MERCHANT"})
    raw["orderItems"][0]["fulfillment"] = {"quantityFulfilled": 2, "quantityUnfulfilled": 0}
    return raw


async def test_a_dropped_confirmation_is_read_back_after_the_grace_and_clears_when_shown() -> None:
    amazon = FakeAmazon()
    now = [datetime(2026, 2, 2, 9, 0, tzinfo=UTC)]
    amazon_connector = connector(amazon, now=lambda: now[0], confirm_grace=GRACE)
    assert isinstance(amazon_connector, ConfirmationsMayLag)
    amazon.on(const.CONFIRM_SHIPMENT, httpx.Response(204))
    amazon.on(const.GET_ORDER, {"order": order()})  # Amazon still shows it unshipped
    reference = await amazon_connector.push_fulfillment(shipment())
    assert await amazon_connector.read_back_shipments() == []
    now[0] += GRACE - timedelta(seconds=1)
    assert await amazon_connector.read_back_shipments() == []
    assert amazon.calls(const.GET_ORDER) == []  # nothing due: no call
    now[0] += timedelta(seconds=1)
    (unseen,) = await amazon_connector.read_back_shipments()
    assert (unseen.order_id, unseen.package_reference) == (ORDER_ID, reference)
    assert len(amazon.calls(const.GET_ORDER)) == 1
    await amazon_connector.read_back_shipments()  # read a moment ago: not again yet
    assert len(amazon.calls(const.GET_ORDER)) == 1
    assert amazon_connector.unseen_shipments() == [unseen]
    now[0] += GRACE
    amazon.on(const.GET_ORDER, {"order": shipped_order()})
    assert await amazon_connector.read_back_shipments() == []
    assert len(amazon.calls(const.GET_ORDER)) == 2
    now[0] += GRACE * 10
    await amazon_connector.read_back_shipments()
    assert len(amazon.calls(const.GET_ORDER)) == 2  # settled: never read again


async def test_an_order_gone_from_amazon_is_no_longer_checked() -> None:
    amazon = FakeAmazon()
    now = [datetime(2026, 2, 2, 9, 0, tzinfo=UTC)]
    amazon_connector = connector(amazon, now=lambda: now[0], confirm_grace=GRACE)
    amazon.on(const.CONFIRM_SHIPMENT, httpx.Response(204))
    await amazon_connector.push_fulfillment(shipment())
    amazon.on(const.GET_ORDER, error(404, "NotFound", "Order not found"))
    now[0] += GRACE
    assert await amazon_connector.read_back_shipments() == []
    now[0] += GRACE
    await amazon_connector.read_back_shipments()
    assert len(amazon.calls(const.GET_ORDER)) == 1


def test_our_buckets_keep_a_token_in_hand_and_never_exceed_amazons_rates() -> None:
    assert set(const.PACED_LIMITS) == set(const.RATE_LIMITS)
    for operation, (rate, burst) in const.PACED_LIMITS.items():
        amazon_rate, amazon_burst = const.RATE_LIMITS[operation]
        assert rate <= amazon_rate
        assert burst == max(1, amazon_burst - 1)
