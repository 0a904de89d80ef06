"""ORDER_CHANGE notifications as Amazon puts them on the SQS queue: parse, never trust.

The message body is the notification itself (OrderChangeNotification.json): the dedupe key is
`NotificationMetadata.NotificationId`, the order is `Payload.OrderChangeNotification
.AmazonOrderId`. The summary is a hint, not the order: the consumer's caller fetches the order
with getOrder and ingests that, so a duplicate, late or reordered notification changes nothing
(ingest keeps the newest `lastUpdatedTime`).

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
class OrderChangeNotice:
    """What an ORDER_CHANGE notification tells: which order changed, and its dedupe key."""

    notification_id: str
    order_id: str
    seller_id: str | None = None
    event_time: datetime | None = None
    change_type: str | None = None
    order_status: str | None = None  # v0 name, from the summary: a hint only


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
    )
