"""ORDER_CHANGE notifications: every order change becomes one notification in the official schema
(specs/amazon/.../schemas/notifications/OrderChangeNotification.json), sent as the body of an SQS
message by a background task (CHANNELS.md: ORDER_CHANGE travels only through SQS).

Bodies are rendered when the change happens, so a late or repeated notification carries the
state of its moment, as Amazon's do. The knobs (faults.py) drop, duplicate (the copy keeps the
same NotificationId, as an SQS redelivery does), delay and jitter sends, or hold them until
`release()` sends them in a shuffled order. A send that fails is retried a few times, then counted
as failed. Without a sink (no SQS queue configured) notifications are only recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sandbox.amazon.faults import NotificationKnobs
from sandbox.amazon.model import V0_STATUS, Clock, Order, iso
from sandbox.amazon.store import SellerStore

log = logging.getLogger(__name__)

RECENT = 10_000
"""How many notifications `/_sandbox/notifications` remembers."""

SEND_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)


class NotificationSink(Protocol):
    """Where notification bodies go (an SQS queue, or a list in tests)."""

    async def send(self, body: str) -> None:
        """Deliver one body (raise when it was not delivered)."""
        ...

    async def aclose(self) -> None:
        """Release what the sink holds."""
        ...


class MemorySink:
    """Keeps bodies in a list (tests)."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    async def send(self, body: str) -> None:
        """Append the body."""
        self.bodies.append(body)

    async def aclose(self) -> None:
        """Nothing to release."""

    def messages(self) -> list[dict[str, Any]]:
        """The bodies as JSON."""
        return [json.loads(body) for body in self.bodies]


def _iso_ms(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order_change(
    order: Order,
    *,
    seller_id: str,
    change_type: str,
    reason: str,
    notification_id: str,
    application_id: str,
    subscription_id: str,
    now: datetime,
) -> dict[str, Any]:
    """One ORDER_CHANGE notification (order level) describing `order` as it is now."""
    shipped = sum(item.shipped for item in order.items)
    unshipped = 0 if order.status == "CANCELLED" else sum(i.unshipped for i in order.items)
    items = [
        {
            "OrderItemId": item.order_item_id,
            "SellerSKU": item.sku,
            "SupplySourceId": None,
            "OrderItemStatus": "Shipped" if item.unshipped == 0 else "Unshipped",
            "Quantity": item.quantity,
            "QuantityShipped": item.shipped,
            "IsBuyerRequestedCancel": item.buyer_requested_cancel,
        }
        for item in order.items
    ]
    summary: dict[str, Any] = {
        "MarketplaceId": order.marketplace_id,
        "OrderStatus": V0_STATUS[order.status],
        "PurchaseDate": _iso_ms(order.created_at),
        "DestinationPostalCode": order.buyer.postal_code,
        "FulfillmentType": order.fulfillment_type,
        "OrderType": "StandardOrder",
        "NumberOfItemsShipped": shipped,
        "NumberOfItemsUnshipped": unshipped,
        "EarliestShipDate": _iso_ms(order.created_at),
        "LatestShipDate": _iso_ms(order.created_at + timedelta(days=2)),
        "OrderItems": items,
    }
    return {
        "NotificationVersion": "1.0",
        "NotificationType": "ORDER_CHANGE",
        "PayloadVersion": "1.0",
        "EventTime": _iso_ms(now),
        "Payload": {
            "OrderChangeNotification": {
                "NotificationLevel": "OrderLevel",
                "SellerId": seller_id,
                "AmazonOrderId": order.order_id,
                "OrderChangeType": change_type,
                "OrderChangeTrigger": {
                    "TimeOfOrderChange": _iso_ms(order.updated_at),
                    "ChangeReason": reason,
                },
                "Summary": summary,
            }
        },
        "NotificationMetadata": {
            "ApplicationId": application_id,
            "SubscriptionId": subscription_id,
            "PublishTime": _iso_ms(now),
            "NotificationId": notification_id,
        },
    }


@dataclass
class Notice:
    """One notification on its way to the queue (what `/_sandbox/notifications` shows: no body,
    since it carries the buyer's postal code)."""

    number: int
    notification_id: str
    order_id: str
    change_type: str
    order_status: str
    at: str
    duplicate: bool = False
    state: str = "pending"  # pending, held, sent, dropped, failed, unsent
    attempts: int = 0

    def describe(self) -> dict[str, Any]:
        """As JSON."""
        return dict(self.__dict__)


class Notifier:
    """Turns order changes into ORDER_CHANGE notifications and sends them in the background."""

    def __init__(
        self,
        store: SellerStore,
        *,
        knobs: Callable[[], NotificationKnobs],
        rng: random.Random,
        clock: Clock,
        sink: NotificationSink | None,
        application_id: str,
    ) -> None:
        self.store = store
        self.knobs = knobs
        self.rng = rng
        self.clock = clock
        self.sink = sink
        self.application_id = application_id
        self.retry_delays_s: tuple[float, ...] = SEND_RETRY_DELAYS_S
        self.subscription_id = f"subscription-{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        self.recent: deque[Notice] = deque(maxlen=RECENT)
        self.counts: Counter[str] = Counter()
        self.held: list[tuple[Notice, str]] = []
        self._numbers = iter(range(1, 1 << 62))
        self._backlog: list[tuple[list[tuple[Notice, str]], float]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        store.listeners.append(self.on_change)

    def on_change(self, order: Order, change_type: str, reason: str) -> None:
        """An order changed: one notification (maybe dropped, doubled, delayed or held)."""
        now = self.clock.now()
        notification_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        body = json.dumps(
            order_change(
                order,
                seller_id=self.store.seller_id,
                change_type=change_type,
                reason=reason,
                notification_id=notification_id,
                application_id=self.application_id,
                subscription_id=self.subscription_id,
                now=now,
            )
        )
        knobs = self.knobs()
        copies = 1
        if knobs.duplicate_rate and self.rng.random() < knobs.duplicate_rate:
            copies = 2
        for copy in range(copies):
            notice = Notice(
                number=next(self._numbers),
                notification_id=notification_id,
                order_id=order.order_id,
                change_type=change_type,
                order_status=V0_STATUS[order.status],
                at=iso(now),
                duplicate=copy > 0,
            )
            self.recent.append(notice)
            self.counts["duplicated" if copy else "created"] += 1
            if copy == 0 and knobs.drop_rate and self.rng.random() < knobs.drop_rate:
                notice.state = "dropped"
                self.counts["dropped"] += 1
                return
            if self.sink is None:
                notice.state = "unsent"
                self.counts["unsent"] += 1
            elif knobs.hold:
                notice.state = "held"
                self.held.append((notice, body))
            else:
                wait = knobs.delay_s + (
                    self.rng.uniform(0, knobs.jitter_s) if knobs.jitter_s else 0
                )
                self._schedule([(notice, body)], wait)

    def release(self) -> int:
        """Send every held notification, in a shuffled order; how many."""
        held, self.held = self.held, []
        self.rng.shuffle(held)
        for notice, _ in held:
            notice.state = "pending"
        if held:
            self._schedule(held, 0.0)
        return len(held)

    def _schedule(self, batch: list[tuple[Notice, str]], wait: float) -> None:
        self._idle.clear()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop yet: start() sends these
            self._backlog.append((batch, wait))
            return
        task = loop.create_task(self._send_all(batch, wait))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks and not self._backlog:
            self._idle.set()

    def start(self) -> None:
        """Send what was queued before the event loop ran (call from inside the loop)."""
        backlog, self._backlog = self._backlog, []
        for batch, wait in backlog:
            self._schedule(batch, wait)

    async def wait_idle(self) -> None:
        """Until no send is pending (held notifications are not waited for)."""
        await self._idle.wait()

    async def _send_all(self, batch: list[tuple[Notice, str]], wait: float) -> None:
        if wait:
            await asyncio.sleep(wait)
        for notice, body in batch:  # in the batch's order: a release's shuffle is kept
            await self._send(notice, body)

    async def _send(self, notice: Notice, body: str) -> None:
        assert self.sink is not None
        for delay in (*self.retry_delays_s, None):
            notice.attempts += 1
            try:
                await self.sink.send(body)
            except Exception as err:  # any sink failure is retried, then reported
                if delay is None:
                    notice.state = "failed"
                    self.counts["failed"] += 1
                    log.warning(
                        "ORDER_CHANGE %s not sent after %d attempts: %s",
                        notice.notification_id,
                        notice.attempts,
                        type(err).__name__,
                    )
                    return
                await asyncio.sleep(delay)
                continue
            notice.state = "sent"
            self.counts["sent"] += 1
            return

    def describe(self, limit: int = 1000) -> dict[str, Any]:
        """Counts and the last `limit` notifications, for `/_sandbox/notifications`."""
        recent = list(self.recent)[-limit:] if limit else []
        return {
            "counts": dict(sorted(self.counts.items())),
            "held": len(self.held),
            "pending": sum(1 for n in self.recent if n.state == "pending"),
            "notifications": [n.describe() for n in recent],
        }

    async def aclose(self) -> None:
        """Stop sending and close the sink."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._backlog.clear()
        self._idle.set()
        if self.sink is not None:
            await self.sink.aclose()
