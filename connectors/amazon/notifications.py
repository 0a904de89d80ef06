"""ORDER_CHANGE notifications as Amazon puts them on the SQS queue: parse, never trust.

The message body is the notification itself (OrderChangeNotification.json): the dedupe key is
`NotificationMetadata.NotificationId`, the order is `Payload.OrderChangeNotification
.AmazonOrderId`. An order-level notification's `Summary` lists every item with its SKU and
quantities: enough to reserve stock the moment the notification is read, without spending a
getOrder (0.5/s, burst 30: a busy seller's notifications outrun it within seconds). It is kept
here as an `OrderSummary` (no postal code); connectors/amazon/mapper_notice.py decides whether it
is complete enough to stand in for the order until a full read (poll or getOrder) replaces it.
A summary that is missing or unreadable is no error: the notice still names the order to fetch.

There is nothing to verify cryptographically: only Amazon (and whoever the seller's IAM policy
lets write to the queue) can put messages there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.amazon.const import ORDER_CHANGE


class NotificationError(ValueError):
    """A message that is not a readable ORDER_CHANGE notification; the message says which part
    is wrong and never quotes the body (it can hold a postal code)."""


@dataclass(frozen=True)
class SummaryItem:
    """One item of an ORDER_CHANGE summary: no price, no buyer data."""

    order_item_id: str
    sku: str | None
    quantity: int
    quantity_shipped: int


@dataclass(frozen=True)
class OrderSummary:
    """What an ORDER_CHANGE summary says of the order, buyer data (postal code) left out."""

    level: str | None
    marketplace_id: str | None
    order_status: str | None  # v0 name
    fulfillment_type: str | None  # MFN, AFN
    purchase_date: datetime | None
    changed_at: datetime | None  # OrderChangeTrigger.TimeOfOrderChange, milliseconds
    items_shipped: int | None
    items_unshipped: int | None
    items: tuple[SummaryItem, ...]


@dataclass(frozen=True)
class OrderChangeNotice:
    """What an ORDER_CHANGE notification tells: which order changed, and its dedupe key."""

    notification_id: str
    order_id: str
    seller_id: str | None = None
    event_time: datetime | None = None
    change_type: str | None = None
    order_status: str | None = None  # v0 name, from the summary: a hint only
    summary: OrderSummary | None = None


def _object(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise NotificationError(f"{name} is missing or not an object")
    return value


def _required_text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise NotificationError(f"{name} is missing or empty")
    return value.strip()


def _optional_text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _optional_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _summary_item(item: object) -> SummaryItem | None:
    if not isinstance(item, Mapping):
        return None
    item_id = _optional_text(item.get("OrderItemId"))
    quantity = _count(item.get("Quantity"))
    shipped = _count(item.get("QuantityShipped"))
    if item_id is None or quantity is None:
        return None
    return SummaryItem(item_id, _optional_text(item.get("SellerSKU")), quantity, shipped or 0)


def _summary(change: Mapping[str, Any], trigger: object) -> OrderSummary | None:
    """The summary's order facts, or None when it lists no readable items."""
    summary = change.get("Summary")
    if not isinstance(summary, Mapping):
        return None
    raw_items = summary.get("OrderItems")
    if not isinstance(raw_items, list) or not raw_items:
        return None
    items = [_summary_item(item) for item in raw_items]
    if any(item is None for item in items):
        return None
    return OrderSummary(
        level=_optional_text(change.get("NotificationLevel")),
        marketplace_id=_optional_text(summary.get("MarketplaceId")),
        order_status=_optional_text(summary.get("OrderStatus")),
        fulfillment_type=_optional_text(summary.get("FulfillmentType")),
        purchase_date=_optional_time(summary.get("PurchaseDate")),
        changed_at=_optional_time(
            trigger.get("TimeOfOrderChange") if isinstance(trigger, Mapping) else None
        ),
        items_shipped=_count(summary.get("NumberOfItemsShipped")),
        items_unshipped=_count(summary.get("NumberOfItemsUnshipped")),
        items=tuple(item for item in items if item is not None),
    )


def parse_order_change(body: str | bytes) -> OrderChangeNotice:
    """The notice in one SQS message body; NotificationError if it is not an ORDER_CHANGE."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise NotificationError("body is not JSON") from err
    root = _object(message, "the notification")
    kind = root.get("NotificationType")
    if kind != ORDER_CHANGE:
        shown = kind[:40] if isinstance(kind, str) else type(kind).__name__
        raise NotificationError(f"NotificationType is {shown!r}, not {ORDER_CHANGE}")
    metadata = _object(root.get("NotificationMetadata"), "NotificationMetadata")
    payload = _object(root.get("Payload"), "Payload")
    change = _object(payload.get("OrderChangeNotification"), "Payload.OrderChangeNotification")
    trigger = change.get("OrderChangeTrigger")
    summary = change.get("Summary")
    return OrderChangeNotice(
        notification_id=_required_text(
            metadata.get("NotificationId"), "NotificationMetadata.NotificationId"
        ),
        order_id=_required_text(change.get("AmazonOrderId"), "AmazonOrderId"),
        seller_id=_optional_text(change.get("SellerId")),
        event_time=_optional_time(
            trigger.get("TimeOfOrderChange") if isinstance(trigger, Mapping) else None
        )
        or _optional_time(root.get("EventTime")),
        change_type=_optional_text(change.get("OrderChangeType")),
        order_status=_optional_text(
            summary.get("OrderStatus") if isinstance(summary, Mapping) else None
        ),
        summary=_summary(change, trigger),
    )
