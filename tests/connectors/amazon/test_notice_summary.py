"""ORDER_CHANGE summaries: a complete one is ingested as it stands (no getOrder, so no wait on its
0.5/s bucket), without the buyer's postal code, dated so that a full read of the same change
replaces it; anything incomplete still asks for the order to be read."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from connectors.amazon import parse_order_change
from connectors.amazon.mapper_notice import provisional_time
from connectors.amazon.notice_queue import AmazonNoticeQueue, stored_body
from connectors.base import Money, Order, OrderStatus
from connectors.webhook_handler import FetchOrder, IngestOrder, WebhookAction
from sync.db import Database
from sync.ingest import ChannelRef, ingest_orders
from sync.models import Channel, Reservation, Sku, StockLevel
from sync.models import Order as OrderRow
from tests.connectors.amazon.conftest import load_spec


def official() -> dict[str, Any]:
    schema = load_spec("schemas", "notifications", "OrderChangeNotification.json")
    (example,) = schema["examples"]
    assert isinstance(example, dict)
    return copy.deepcopy(example)


def new_order() -> dict[str, Any]:
    """The official example as a fresh, unshipped order (not a buyer's cancel request)."""
    message = official()
    change = message["Payload"]["OrderChangeNotification"]
    change["OrderChangeType"] = "OrderStatusChange"
    for item in change["Summary"]["OrderItems"]:
        item["IsBuyerRequestedCancel"] = False
    return message


def summary(message: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = message["Payload"]["OrderChangeNotification"]["Summary"]
    return result


def mapped(message: dict[str, Any]) -> WebhookAction:
    """What the daemon does with the notice once the inbox holds it."""
    body = stored_body(parse_order_change(json.dumps(message)))
    return AmazonNoticeQueue.map(object.__new__(AmazonNoticeQueue), "ORDER_CHANGE", body)


def test_a_complete_summary_is_ingested_without_reading_the_order() -> None:
    action = mapped(new_order())
    assert isinstance(action, IngestOrder)
    order = action.order
    assert order.external_id == "903-8868176-2219830"
    assert order.status is OrderStatus.OPEN
    assert order.currency == "USD"
    assert order.is_reserving  # FulfillmentType MFN: our stock
    assert [
        (ln.external_line_id, ln.sku, ln.quantity, ln.quantity_shipped) for ln in order.lines
    ] == [("OIID34853450", "SellerSKUID1", 10, 0)]
    assert order.total is None and order.ship_to is None  # what the next full read brings


def test_the_stored_notice_keeps_no_postal_code() -> None:
    body = stored_body(parse_order_change(json.dumps(new_order())))
    assert b"48110" not in body
    assert b"PostalCode" not in body


def test_a_full_read_of_the_same_change_is_newer_than_the_summary() -> None:
    # TimeOfOrderChange has milliseconds; getOrder's lastUpdatedTime has whole seconds.
    changed = datetime(2022, 11, 29, 19, 42, 4, 284000, tzinfo=UTC)
    full_read = datetime(2022, 11, 29, 19, 42, 4, tzinfo=UTC)
    earlier_full_read = datetime(2022, 11, 29, 19, 42, 3, tzinfo=UTC)
    action = mapped(new_order())
    assert isinstance(action, IngestOrder)
    assert action.order.updated_at == provisional_time(changed)
    assert earlier_full_read < action.order.updated_at < full_read
    # Two changes within one second keep their order.
    later = changed.replace(microsecond=285000)
    assert provisional_time(changed) < provisional_time(later) < full_read


def test_a_cancelled_summary_cancels_every_unshipped_unit() -> None:
    message = new_order()
    summary(message)["OrderStatus"] = "Canceled"
    summary(message)["NumberOfItemsUnshipped"] = 0
    action = mapped(message)
    assert isinstance(action, IngestOrder)
    assert action.order.status is OrderStatus.CANCELLED
    assert [(ln.quantity, ln.quantity_cancelled) for ln in action.order.lines] == [(10, 10)]


def test_an_amazon_fulfilled_order_reserves_nothing() -> None:
    message = new_order()
    summary(message)["FulfillmentType"] = "AFN"
    action = mapped(message)
    assert isinstance(action, IngestOrder)
    assert not action.order.is_reserving


def _item_level(message: dict[str, Any]) -> None:
    message["Payload"]["OrderChangeNotification"]["NotificationLevel"] = "OrderItemLevel"


def _counts_disagree(message: dict[str, Any]) -> None:
    summary(message)["NumberOfItemsUnshipped"] = 12  # an item is missing from the list


def _no_items(message: dict[str, Any]) -> None:
    del summary(message)["OrderItems"]


def _unknown_marketplace(message: dict[str, Any]) -> None:
    summary(message)["MarketplaceId"] = "XNOTAMARKET"


def _unknown_status(message: dict[str, Any]) -> None:
    summary(message)["OrderStatus"] = "Mysterious"


def _no_change_time(message: dict[str, Any]) -> None:
    message["Payload"]["OrderChangeNotification"]["OrderChangeTrigger"]["TimeOfOrderChange"] = None


def _item_without_quantity(message: dict[str, Any]) -> None:
    del summary(message)["OrderItems"][0]["Quantity"]


@pytest.mark.parametrize(
    "spoil",
    [
        _item_level,
        _counts_disagree,
        _no_items,
        _unknown_marketplace,
        _unknown_status,
        _no_change_time,
        _item_without_quantity,
    ],
)
def test_an_incomplete_summary_asks_for_the_order(spoil: Any) -> None:
    message = new_order()
    spoil(message)
    assert mapped(message) == FetchOrder("903-8868176-2219830")


def test_a_notice_stored_before_summaries_were_kept_asks_for_the_order() -> None:
    queue = object.__new__(AmazonNoticeQueue)
    assert AmazonNoticeQueue.map(queue, "ORDER_CHANGE", b'{"order_id": "111-1"}') == FetchOrder(
        "111-1"
    )


# --- through the store: the summary reserves at once; the full read of its change replaces it --


def _amazon(database: Database) -> ChannelRef:
    with database.session() as session:
        channel = Channel(name="amazon-us", kind="amazon")
        session.add_all([channel, Sku(sku="SellerSKUID1")])
        session.flush()
        session.add(StockLevel(sku="SellerSKUID1", location="default", on_hand=100))
        session.flush()
        return ChannelRef(channel.id, "amazon-us")


def _summary_order() -> Order:
    action = mapped(new_order())
    assert isinstance(action, IngestOrder)
    return action.order


def _full_read(summary_order: Order) -> Order:
    """getOrder of the same change: whole-second lastUpdatedTime, with the money."""
    return dataclasses.replace(
        summary_order,
        updated_at=datetime(2022, 11, 29, 19, 42, 4, tzinfo=UTC),
        total=Money(Decimal("99.90"), "USD"),
        is_partial=False,
    )


def _stored(database: Database) -> tuple[Decimal | None, int]:
    with database.read_session() as session:
        row = session.scalars(select(OrderRow)).one()
        reserved = session.scalar(select(func.sum(Reservation.reserved))) or 0
        return (Decimal(row.total) if row.total is not None else None), int(reserved)


def test_the_summary_reserves_and_the_full_read_of_its_change_replaces_it(
    database: Database,
) -> None:
    amazon = _amazon(database)
    summary_order = _summary_order()
    database.transact(lambda s: ingest_orders(s, amazon, [summary_order]))
    assert _stored(database) == (None, 10)  # reserved at once, no price yet
    database.transact(lambda s: ingest_orders(s, amazon, [_full_read(summary_order)]))
    assert _stored(database) == (Decimal("99.90"), 10)  # the full read won; nothing reserved twice


def test_a_late_summary_does_not_replace_the_full_read_of_its_change(database: Database) -> None:
    amazon = _amazon(database)
    summary_order = _summary_order()
    database.transact(lambda s: ingest_orders(s, amazon, [_full_read(summary_order)]))
    database.transact(lambda s: ingest_orders(s, amazon, [summary_order]))
    assert _stored(database) == (Decimal("99.90"), 10)


def test_a_newer_summary_changes_the_status_and_keeps_what_the_full_read_brought(
    database: Database,
) -> None:
    amazon = _amazon(database)
    summary_order = _summary_order()
    assert summary_order.is_partial
    database.transact(lambda s: ingest_orders(s, amazon, [_full_read(summary_order)]))
    shipped = dataclasses.replace(
        summary_order,
        status=OrderStatus.SHIPPED,
        updated_at=datetime(2022, 11, 29, 20, 0, 0, tzinfo=UTC),
        lines=[
            dataclasses.replace(line, quantity_shipped=line.quantity)
            for line in summary_order.lines
        ],
    )
    database.transact(lambda s: ingest_orders(s, amazon, [shipped]))
    with database.read_session() as session:
        row = session.scalars(select(OrderRow)).one()
        assert row.status is OrderStatus.SHIPPED
        assert row.total == Decimal("99.90")  # not wiped by a summary that carries no money
