"""The reference connector: the Connector protocol over a MemoryMarketplace, faults included.

Every call is counted, checked against `faults.max_in_flight`, delayed by `faults.latency`, then
suffers its planned fault (before acting, or after acting with the answer lost) or acts. The
channel's own rules live here, as a real channel's API would enforce them: batch limits,
compare-and-swap, line validation, and whether a resent fulfilment is deduped or recorded twice.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

from connectors.base import (
    CancelRequest,
    Capabilities,
    ChannelListing,
    FulfillmentRequest,
    Order,
    OrderPage,
    PushOutcome,
    ShipmentLine,
    StockPushResult,
    StockTarget,
)
from connectors.errors import (
    AuthError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
)
from connectors.memory.marketplace import MemoryMarketplace, ReceivedCancel, ReceivedFulfillment

T = TypeVar("T")
_OrderKey = tuple[datetime, str]


def _encode_cursor(key: _OrderKey) -> str:
    raw = f"{key[0].isoformat()}|{key[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decode_cursor(cursor: str) -> _OrderKey:
    try:
        stamp, external_id = base64.urlsafe_b64decode(cursor).decode().split("|", 1)
        updated_at = datetime.fromisoformat(stamp)
    except (binascii.Error, UnicodeDecodeError, ValueError) as err:
        raise PermanentError("invalid cursor") from err
    if updated_at.tzinfo is None:
        raise PermanentError("invalid cursor")
    return updated_at, external_id


def _order_key(order: Order) -> _OrderKey:
    return order.updated_at, order.external_id


def _line_key(lines: Sequence[ShipmentLine]) -> list[tuple[str, int]]:
    return sorted((line.external_line_id, line.quantity) for line in lines)


def _units(lines: Sequence[ShipmentLine]) -> dict[str, int]:
    units: dict[str, int] = {}
    for line in lines:
        units[line.external_line_id] = units.get(line.external_line_id, 0) + line.quantity
    return units


class MemoryConnector:
    """A Connector to one in-memory channel, held to the same contract as a real marketplace."""

    def __init__(
        self,
        marketplace: MemoryMarketplace,
        *,
        name: str,
        capabilities: Capabilities,
        page_size: int = 50,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.marketplace = marketplace
        self.name = name
        self.capabilities = capabilities
        self.page_size = page_size
        self.is_closed = False

    async def check_connection(self) -> None:
        """Prove the credentials work; AuthError when `faults.auth_broken`."""
        await self._call("check_connection", lambda: None)

    async def fetch_orders(self, updated_since: datetime, cursor: str | None) -> OrderPage:
        """Orders updated at or after `updated_since`, by (updated_at, id), one page at a time."""
        return await self._call("fetch_orders", lambda: self._page(updated_since, cursor))

    async def fetch_order(self, external_id: str) -> Order:
        """One order by the channel's id; NotFoundError if there is none."""
        return await self._call("fetch_order", lambda: self._require_order(external_id))

    async def push_stock(self, targets: Sequence[StockTarget]) -> Sequence[StockPushResult]:
        """Set quantities (compare-and-swap where capable); PermanentError past the batch limit."""
        self.marketplace.batch_sizes.append(len(targets))
        return await self._call("push_stock", lambda: self._apply_stock(targets))

    async def read_stock(self, listing_refs: Sequence[str]) -> Mapping[str, int]:
        """What the channel shows now for these listings; unknown ones are left out."""
        stock = self.marketplace.stock
        return await self._call(
            "read_stock", lambda: {ref: stock[ref] for ref in listing_refs if ref in stock}
        )

    async def list_listings(self) -> Sequence[ChannelListing]:
        """Every listing the channel holds; its SKU is its reference here."""
        stock = self.marketplace.stock
        return await self._call(
            "list_listings",
            lambda: [
                ChannelListing(listing_ref=ref, sku=ref, quantity=qty)
                for ref, qty in sorted(stock.items())
            ],
        )

    async def listing_pages(self) -> AsyncIterator[Sequence[ChannelListing]]:
        """The listings as one page: a memory channel is small, and one call keeps its counts."""
        yield await self.list_listings()

    async def push_fulfillment(self, request: FulfillmentRequest) -> str:
        """Record a shipment; a resent key is deduped only if the channel is idempotent."""
        return await self._call("push_fulfillment", lambda: self._fulfil(request))

    async def find_fulfillment(self, request: FulfillmentRequest) -> str | None:
        """The id of a recorded fulfilment with the same key, or same tracking and lines."""
        return await self._call("find_fulfillment", lambda: self._find(request))

    async def cancel_order(self, request: CancelRequest) -> None:
        """Cancel on the channel, once per key; PermanentError if the order is already shipped."""
        await self._call("cancel_order", lambda: self._cancel(request))

    async def aclose(self) -> None:
        """Release connections (nothing to release in memory)."""
        self.is_closed = True

    async def _call(self, operation: str, act: Callable[[], T]) -> T:
        market = self.marketplace
        faults = market.faults
        market.calls[operation] += 1
        market.in_flight += 1
        market.max_in_flight_seen = max(market.max_in_flight_seen, market.in_flight)
        try:
            if faults.max_in_flight is not None and market.in_flight > faults.max_in_flight:
                raise RateLimitedError("too many calls in flight", retry_after=faults.retry_after)
            # Decided before the wait, so the random draws follow the order the calls were made.
            plan = faults.plan(operation, market.rng)
            await asyncio.sleep(faults.latency)
            if faults.auth_broken:
                raise AuthError("credentials refused")
            if plan.before is not None:
                raise plan.before
            result = act()
            if plan.after is not None:
                raise plan.after
            return result
        except ConnectorError as err:
            err.channel = err.channel or self.name
            err.operation = err.operation or operation
            if isinstance(err, RateLimitedError):
                market.throttled[operation] += 1
            raise
        finally:
            market.in_flight -= 1

    def _require_order(self, external_id: str) -> Order:
        order = self.marketplace.orders.get(external_id)
        if order is None:
            raise NotFoundError(f"no order {external_id}")
        return order

    def _page(self, updated_since: datetime, cursor: str | None) -> OrderPage:
        # Keyset pagination: a page starts after the last key handed out, so an unchanged store
        # yields every order once, and an order updated meanwhile moves to the end (seen again).
        after = _decode_cursor(cursor) if cursor is not None else None
        ordered = sorted(
            (o for o in self.marketplace.orders.values() if o.updated_at >= updated_since),
            key=_order_key,
        )
        remaining = [order for order in ordered if after is None or _order_key(order) > after]
        page = remaining[: self.page_size]
        next_cursor = None
        if len(remaining) > self.page_size:
            next_cursor = _encode_cursor(_order_key(page[-1]))
        return OrderPage(orders=tuple(page), next_cursor=next_cursor)

    def _apply_stock(self, targets: Sequence[StockTarget]) -> list[StockPushResult]:
        market = self.marketplace
        if len(targets) > self.capabilities.max_stock_batch:
            raise PermanentError(
                f"batch of {len(targets)} exceeds {self.capabilities.max_stock_batch}"
            )
        if market.faults.on_push is not None:
            market.faults.on_push(targets)
        results = []
        for target in targets:
            ref = target.listing_ref
            current = market.stock_of(ref)
            if (
                self.capabilities.supports_compare_and_swap
                and target.expected is not None
                and current != target.expected
            ):
                results.append(StockPushResult(ref, PushOutcome.CONFLICT, actual=current))
                continue
            market.stock[ref] = target.quantity
            market.pushes.setdefault(ref, []).append(target.quantity)
            results.append(StockPushResult(ref, PushOutcome.APPLIED))
        return results

    def _refuse_if_configured(self, order_external_id: str) -> None:
        reason = self.marketplace.faults.permanent_for.get(order_external_id)
        if reason is not None:
            raise PermanentError(reason, reason=reason)

    def _fulfil(self, request: FulfillmentRequest) -> str:
        market = self.marketplace
        self._require_order(request.order_external_id)
        self._refuse_if_configured(request.order_external_id)
        if not request.lines:
            raise PermanentError("a fulfilment needs lines")
        same_key = [f for f in market.fulfillments if f.key == request.key]
        if same_key and self.capabilities.idempotent_fulfillment:
            return same_key[0].fulfillment_id
        # The order shows every fulfilment as a parcel, under the id answered here. A resend on
        # a channel that cannot dedupe is recorded again (as eBay would) but the order cannot
        # ship its units twice, so only a new key moves the shipped quantities.
        order_id, carrier, tracking = (
            request.order_external_id,
            request.carrier,
            request.tracking_number,
        )
        if not same_key:
            try:
                order = market.ship_parcel(
                    order_id, _units(request.lines), carrier=carrier, tracking=tracking
                )
            except ValueError as err:
                raise PermanentError(str(err)) from err
        else:
            order = market.add_parcel(order_id, request.lines, carrier=carrier, tracking=tracking)
        received = ReceivedFulfillment(
            key=request.key,
            order_external_id=request.order_external_id,
            lines=tuple(request.lines),
            carrier=request.carrier,
            tracking=request.tracking_number,
            fulfillment_id=order.shipments[-1].external_id,
        )
        market.fulfillments.append(received)
        return received.fulfillment_id

    def _find(self, request: FulfillmentRequest) -> str | None:
        wanted_lines = _line_key(request.lines)
        for received in self.marketplace.fulfillments:
            if received.order_external_id != request.order_external_id:
                continue
            if received.key == request.key or (
                received.tracking == request.tracking_number
                and _line_key(received.lines) == wanted_lines
            ):
                return received.fulfillment_id
        return None

    def _cancel(self, request: CancelRequest) -> None:
        market = self.marketplace
        self._require_order(request.order_external_id)
        self._refuse_if_configured(request.order_external_id)
        if any(c.key == request.key for c in market.cancels):
            return
        try:
            market.cancel(
                request.order_external_id, _units(request.lines) if request.lines else None
            )
        except ValueError as err:
            raise PermanentError(str(err)) from err
        market.cancels.append(
            ReceivedCancel(
                request.key, request.order_external_id, tuple(request.lines), request.reason
            )
        )
