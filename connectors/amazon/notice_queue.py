"""The ORDER_CHANGE consumer as the daemon's notice queue (connectors/notice_queue.py).

The inbox keeps a small JSON of each notice (its id, the order id, the change type and time, and
the summary's order facts and items), not the SQS body: Amazon's summary can carry the buyer's
postal code. A stored notice whose summary is complete is ingested as it is (a provisional order,
connectors/amazon/mapper_notice.py), so the reservation does not queue behind getOrder's 0.5/s;
any other asks for the order to be read again with getOrder.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence

from connectors.amazon.const import ORDER_CHANGE
from connectors.amazon.mapper_notice import order_from_summary, summary_of_record, summary_record
from connectors.amazon.notifications import OrderChangeNotice
from connectors.amazon.sqs import OrderChangeConsumer, QueuedNotice
from connectors.base import Order
from connectors.notice_queue import QueuedDelivery
from connectors.webhook_handler import (
    FetchOrder,
    IgnoreDelivery,
    IngestOrder,
    MalformedDeliveryError,
    WebhookAction,
)


def stored_body(notice: OrderChangeNotice) -> bytes:
    """What the inbox keeps of a notice: no buyer data."""
    return json.dumps(
        {
            "notification_id": notice.notification_id,
            "order_id": notice.order_id,
            "change_type": notice.change_type,
            "event_time": notice.event_time.isoformat() if notice.event_time else None,
            "summary": summary_record(notice.summary) if notice.summary else None,
        },
        separators=(",", ":"),
    ).encode()


class AmazonNoticeQueue:
    """One channel's ORDER_CHANGE queue, read through OrderChangeConsumer."""

    def __init__(self, consumer: OrderChangeConsumer) -> None:
        self.consumer = consumer
        self.channel = consumer.channel
        self._is_open = False

    async def open(self) -> None:
        """Create the SQS client."""
        if not self._is_open:
            await self.consumer.__aenter__()
            self._is_open = True

    async def close(self) -> None:
        """Close the SQS client; messages not deleted come back after their visibility timeout."""
        if self._is_open:
            self._is_open = False
            await self.consumer.__aexit__(None, None, None)

    async def batches(self) -> AsyncIterator[Sequence[QueuedDelivery]]:
        """Each non-empty long poll, its notices keyed by NotificationId."""
        async for batch in self.consumer.batches():
            yield [
                QueuedDelivery(
                    delivery_id=item.notice.notification_id,
                    topic=ORDER_CHANGE,
                    body=stored_body(item.notice),
                    receipt=item,
                )
                for item in batch
            ]

    async def acknowledge(self, deliveries: Sequence[QueuedDelivery]) -> None:
        """Delete the messages (their notices are committed in the inbox)."""
        items = [d.receipt for d in deliveries if isinstance(d.receipt, QueuedNotice)]
        if items:
            await self.consumer.delete(items)

    def map(self, topic: str, body: bytes) -> WebhookAction:
        """A stored ORDER_CHANGE with a complete summary is ingested as it stands; any other asks
        for the order to be read again (getOrder)."""
        if topic != ORDER_CHANGE:
            return IgnoreDelivery(f"topic {topic[:40]!r} is not {ORDER_CHANGE}")
        try:
            stored = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise MalformedDeliveryError("stored notice is not JSON") from err
        order_id = stored.get("order_id") if isinstance(stored, dict) else None
        if not isinstance(order_id, str) or not order_id.strip():
            raise MalformedDeliveryError("stored notice has no order id")
        order = _summary_order(order_id.strip(), stored.get("summary"))
        return IngestOrder(order) if order is not None else FetchOrder(order_id.strip())


def _summary_order(order_id: str, record: object) -> Order | None:
    """The provisional order of a stored summary; None (read it instead) when there is none or
    it cannot stand in for the order."""
    if not isinstance(record, dict):
        return None
    try:
        summary = summary_of_record(record)
    except (KeyError, TypeError, ValueError):
        return None
    return order_from_summary(order_id, summary)
