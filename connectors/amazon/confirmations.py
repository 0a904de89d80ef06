"""Shipments Amazon accepted but does not show yet: read back, alert once when they stay unseen.

confirmShipment answers 204 even when the buyer will not see the shipment (CHANNELS.md): a
wrong carrier code, an item id that does not match. So each confirmation is remembered, and every
later read of the order (the next poll, a notification's getOrder) checks that Amazon shows the
parcel or the shipped units. One still unseen after the grace period (CONFIRM_VISIBLE_GRACE by
default) is logged as a warning, once, and listed by `unseen()` for the channel's status until
Amazon shows it. A poll's searchOrders only returns orders Amazon updated, and a confirmation
Amazon dropped updates nothing: `due()` names the orders to re-read with getOrder (once the grace
has passed, then once per grace period while unseen).

Kept in memory: after a restart the reads no longer check the confirmations made before it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from connectors.amazon.const import CONFIRM_VISIBLE_GRACE
from connectors.base import FulfillmentRequest, Order, OrderStatus

log = logging.getLogger(__name__)

_FORGET_AFTER = timedelta(days=7)


@dataclass(frozen=True)
class UnseenShipment:
    """A confirmed shipment Amazon's order did not show past the grace period."""

    order_id: str
    package_reference: str
    confirmed_at: datetime


@dataclass
class _Pending:
    reference: str
    tracking: str
    units: dict[str, int]
    confirmed_at: datetime
    is_alerted: bool = False
    read_at: datetime | None = None  # the last read of the order that checked this shipment


class Confirmations:
    """One channel's confirmed shipments that reads have not shown yet."""

    def __init__(
        self,
        channel: str,
        *,
        now: Callable[[], datetime],
        grace: timedelta = CONFIRM_VISIBLE_GRACE,
    ) -> None:
        self._channel = channel
        self._now = now
        self._grace = grace
        self._pending: dict[str, list[_Pending]] = {}

    def remember(self, request: FulfillmentRequest, reference: str) -> None:
        """Amazon accepted this shipment: the next reads of its order should show it."""
        self._pending.setdefault(request.order_external_id, []).append(
            _Pending(
                reference=reference,
                tracking=(request.tracking_number or "").strip().casefold(),
                units={line.external_line_id: line.quantity for line in request.lines},
                confirmed_at=self._now(),
            )
        )

    def check(self, orders: Sequence[Order]) -> None:
        """Compare freshly read orders with what was confirmed on them."""
        now = self._now()
        for order in orders:
            pending = self._pending.get(order.external_id)
            if not pending:
                continue
            left = [item for item in pending if not self._is_settled(order, item, now)]
            if left:
                self._pending[order.external_id] = left
            else:
                del self._pending[order.external_id]
        for order_id in [k for k, v in self._pending.items() if self._is_stale(v, now)]:
            del self._pending[order_id]

    def due(self, limit: int) -> list[str]:
        """Orders to re-read now: a confirmation past the grace period not read since it ran
        out, or an unseen one not read for a grace period; oldest confirmation first."""
        now = self._now()
        found = sorted(
            (min(item.confirmed_at for item in items), order_id)
            for order_id, items in self._pending.items()
            if any(self._is_due(item, now) for item in items)
        )
        return [order_id for _, order_id in found[:limit]]

    def _is_due(self, item: _Pending, now: datetime) -> bool:
        if now - item.confirmed_at < self._grace:
            return False
        if item.read_at is None or item.read_at - item.confirmed_at < self._grace:
            return True
        return now - item.read_at >= self._grace

    def forget(self, order_id: str) -> None:
        """The order is gone from the channel: nothing left to check on it."""
        self._pending.pop(order_id, None)

    def _is_settled(self, order: Order, item: _Pending, now: datetime) -> bool:
        item.read_at = now
        if order.status is OrderStatus.CANCELLED or _shows(order, item):
            if item.is_alerted:
                log.info(
                    "channel %s: order %s now shows shipment %s",
                    self._channel,
                    order.external_id,
                    item.reference,
                )
            return True
        if not item.is_alerted and now - item.confirmed_at >= self._grace:
            item.is_alerted = True
            log.warning(
                "channel %s: order %s still shows shipment %s unshipped %d min after Amazon "
                "accepted it: check the carrier code and items in Seller Central",
                self._channel,
                order.external_id,
                item.reference,
                (now - item.confirmed_at).total_seconds() // 60,
            )
        return False

    @staticmethod
    def _is_stale(items: list[_Pending], now: datetime) -> bool:
        return all(now - item.confirmed_at > _FORGET_AFTER for item in items)

    def unseen(self) -> list[UnseenShipment]:
        """The alerted shipments Amazon still does not show (safe from another thread: a
        metrics scrape reads it off the event loop)."""
        return [
            UnseenShipment(order_id, item.reference, item.confirmed_at)
            for order_id, items in list(self._pending.items())
            for item in list(items)
            if item.is_alerted
        ]


def _shows(order: Order, item: _Pending) -> bool:
    for shipment in order.shipments:
        if shipment.external_id == item.reference:
            return True
        if item.tracking and (shipment.tracking_number or "").strip().casefold() == item.tracking:
            return True
    shipped = {line.external_line_id: line.quantity_shipped for line in order.lines}
    return bool(item.units) and all(
        shipped.get(line_id, 0) >= quantity for line_id, quantity in item.units.items()
    )
