"""An ORDER_CHANGE summary as a provisional canonical order, so stock is reserved without getOrder.

Why: getOrder runs at 0.5/s (burst 30). A seller taking a few Amazon orders a second empties the
bucket within seconds, and every order after that waited up to minutes for its getOrder before it
reserved anything, while the other channels kept selling the same units. An order-level summary
already lists every item with its SKU and quantities (OrderChangeNotification.json), which is all
the reservation needs.

What the summary lacks (prices, the address, packages) comes with the next full read: the poller's
searchOrders, or a getOrder. For that read to replace the summary, the summary's order is dated
just below the whole second of its change: Amazon's `lastUpdatedTime` has whole seconds while
`TimeOfOrderChange` has milliseconds, so a summary dated at its own millisecond would look newer
than the full read of the very same change, and ingest (newest wins) would keep the price-less
copy. Summaries of one second stay in their order: the milliseconds become microseconds below
that second. A full read of a change in an earlier second stays older than the summary.

A summary is used only when it says it is complete: order-level, a known status and marketplace
currency, the time of the change, every item with a quantity, and item counts that add up to the
summary's own totals. Anything else answers None and the caller falls back to getOrder: an
incomplete list of items would read to ingest as lines removed from the order.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from connectors.amazon.const import AMAZON_FULFILLED, MARKETPLACE_CURRENCIES, V0_ORDER_STATUSES
from connectors.amazon.notifications import OrderSummary, SummaryItem
from connectors.base import InvalidValueError, Order, OrderLine, OrderStatus

ORDER_LEVEL = "OrderLevel"
JUST_BELOW = timedelta(milliseconds=1)


def summary_record(summary: OrderSummary) -> dict[str, Any]:
    """The summary as the inbox keeps it (JSON; no buyer data)."""
    return {
        "level": summary.level,
        "marketplace_id": summary.marketplace_id,
        "order_status": summary.order_status,
        "fulfillment_type": summary.fulfillment_type,
        "purchase_date": summary.purchase_date.isoformat() if summary.purchase_date else None,
        "changed_at": summary.changed_at.isoformat() if summary.changed_at else None,
        "items_shipped": summary.items_shipped,
        "items_unshipped": summary.items_unshipped,
        "items": [
            [item.order_item_id, item.sku, item.quantity, item.quantity_shipped]
            for item in summary.items
        ],
    }


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    when = datetime.fromisoformat(value)
    return when if when.tzinfo is not None else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def summary_of_record(record: Mapping[str, Any]) -> OrderSummary:
    """The stored record back as a summary; ValueError/TypeError/KeyError when it is not one."""
    items = tuple(
        SummaryItem(str(item_id), _text(sku), int(quantity), int(shipped))
        for item_id, sku, quantity, shipped in record["items"]
    )
    return OrderSummary(
        level=_text(record.get("level")),
        marketplace_id=_text(record.get("marketplace_id")),
        order_status=_text(record.get("order_status")),
        fulfillment_type=_text(record.get("fulfillment_type")),
        purchase_date=_time(record.get("purchase_date")),
        changed_at=_time(record.get("changed_at")),
        items_shipped=_count(record.get("items_shipped")),
        items_unshipped=_count(record.get("items_unshipped")),
        items=items,
    )


def provisional_time(changed_at: datetime) -> datetime:
    """Just below the whole second of `changed_at`, keeping order within that second."""
    second = changed_at.replace(microsecond=0)
    return second - JUST_BELOW + (changed_at - second) / 1000


def _is_complete(summary: OrderSummary, status: OrderStatus) -> bool:
    if summary.level != ORDER_LEVEL or not summary.items:
        return False
    if any(item.quantity_shipped > item.quantity for item in summary.items):
        return False
    shipped = sum(item.quantity_shipped for item in summary.items)
    unshipped = sum(item.quantity - item.quantity_shipped for item in summary.items)
    if summary.items_shipped is not None and summary.items_shipped != shipped:
        return False
    # A cancelled order counts nothing unshipped (its units are off the order).
    return status is OrderStatus.CANCELLED or summary.items_unshipped in (None, unshipped)


def _line(item: SummaryItem, status: OrderStatus) -> OrderLine | None:
    if item.sku is None:
        return None  # as the full mappers: a line without a SKU is not ours to count
    cancelled = item.quantity - item.quantity_shipped if status is OrderStatus.CANCELLED else 0
    return OrderLine(
        external_line_id=item.order_item_id,
        sku=item.sku,
        quantity=item.quantity,
        quantity_cancelled=cancelled,
        quantity_shipped=item.quantity_shipped,
    )


def order_from_summary(order_id: str, summary: OrderSummary) -> Order | None:
    """A provisional canonical order from a complete summary; None when it is not complete."""
    status = V0_ORDER_STATUSES.get(summary.order_status or "")
    currency = MARKETPLACE_CURRENCIES.get(summary.marketplace_id or "")
    if status is None or currency is None or summary.changed_at is None:
        return None
    if not _is_complete(summary, status):
        return None
    try:
        lines = [line for line in (_line(item, status) for item in summary.items) if line]
        return Order(
            external_id=order_id,
            number=order_id,
            status=status,
            currency=currency,
            updated_at=provisional_time(summary.changed_at),
            created_at=summary.purchase_date,
            lines=lines,
            is_reserving=(summary.fulfillment_type or "") not in AMAZON_FULFILLED,
            is_partial=True,
        )
    except InvalidValueError:
        return None
