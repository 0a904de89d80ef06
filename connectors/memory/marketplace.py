"""The in-memory marketplace behind the reference connector: one channel's own state and faults.

Tests and benchmarks drive it as buyers and as the seller in the channel's own admin
(`place_order`, `cancel`, `ship_on_channel`), make it misbehave through `faults`, and inspect what
it received (`stock`, `pushes`, `fulfillments`, `cancels`, `calls`). Everything is synchronous and
deterministic: times come from an injectable clock, faults from the `random.Random` passed in.
"""

from __future__ import annotations

import copy
import inspect
import random
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from connectors.base import (
    Address,
    ChannelShipment,
    Connector,
    Money,
    Order,
    OrderLine,
    OrderStatus,
    ShipmentLine,
    StockTarget,
)
from connectors.errors import (
    ConnectorError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
)

# The protocol's calls to a channel (every coroutine but aclose), as counted in `calls`.
OPERATIONS = frozenset(
    name for name, value in vars(Connector).items() if inspect.iscoroutinefunction(value)
) - {"aclose"}
CLOCK_START = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_UNIT_PRICE = Decimal("10.00")


class FakeClock:
    """A clock that moves one `step` forward each time it is read, from 2026-01-01 UTC."""

    def __init__(self, start: datetime = CLOCK_START, step: timedelta = timedelta(seconds=1)):
        if start.tzinfo is None or step <= timedelta(0):
            raise ValueError("a fake clock needs an aware start and a positive step")
        self._next = start
        self._step = step

    def __call__(self) -> datetime:
        now = self._next
        self._next += self._step
        return now


class OutOfStockError(ValueError):
    """A buyer wanted more than the channel shows, on a marketplace that refuses to oversell."""


class ReceivedFulfillment(NamedTuple):
    """A shipment the marketplace received through its API, under the id it answered."""

    key: str
    order_external_id: str
    lines: tuple[ShipmentLine, ...]
    carrier: str | None
    tracking: str | None
    fulfillment_id: str


class ReceivedCancel(NamedTuple):
    """A cancellation the marketplace received through its API."""

    key: str
    order_external_id: str
    lines: tuple[ShipmentLine, ...]
    reason: str


@dataclass(frozen=True)
class FaultRates:
    """Probabilities, each in [0, 1], of the faults injected into one operation."""

    fail_rate_before: float = 0.0
    fail_rate_after: float = 0.0
    throttle_rate: float = 0.0


@dataclass(frozen=True)
class FaultPlan:
    """What one call suffers: an error raised before acting, or after acting (the answer lost)."""

    before: ConnectorError | None = None
    after: ConnectorError | None = None


@dataclass
class Faults:
    """The knobs that make the marketplace misbehave; `per_operation` overrides the global rates."""

    fail_rate_before: float = 0.0
    fail_rate_after: float = 0.0
    throttle_rate: float = 0.0
    retry_after: float = 1.0
    per_operation: dict[str, FaultRates] = field(default_factory=dict)
    auth_broken: bool = False
    permanent_for: dict[str, str] = field(default_factory=dict)
    latency: float = 0.0
    max_in_flight: int | None = None
    on_push: Callable[[Sequence[StockTarget]], None] | None = None
    _queued: dict[str, deque[tuple[ConnectorError, bool]]] = field(
        default_factory=dict, init=False, repr=False
    )

    def fail_next(
        self, operation: str, error: ConnectorError, times: int = 1, *, after: bool | None = None
    ) -> None:
        """Raise `error` on the next `times` calls of `operation` (after acting: `after`, by default
        only for UncertainOutcomeError)."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        is_after = isinstance(error, UncertainOutcomeError) if after is None else after
        queue = self._queued.setdefault(operation, deque())
        queue.extend((error, is_after) for _ in range(times))

    def rates_for(self, operation: str) -> FaultRates:
        """The fault rates that apply to `operation`."""
        return self.per_operation.get(operation) or FaultRates(
            self.fail_rate_before, self.fail_rate_after, self.throttle_rate
        )

    def plan(self, operation: str, rng: random.Random) -> FaultPlan:
        """Decide one call's fault: a queued error first, else throttle, fail-before, fail-after."""
        queue = self._queued.get(operation)
        if queue:
            error, is_after = queue.popleft()
            error = copy.copy(error)  # the same error may be queued several times
            return FaultPlan(after=error) if is_after else FaultPlan(before=error)
        rates = self.rates_for(operation)
        # Draw only for the knobs that are on, so a run's draws depend on its settings alone.
        if rates.throttle_rate and rng.random() < rates.throttle_rate:
            return FaultPlan(before=RateLimitedError("throttled", retry_after=self.retry_after))
        if rates.fail_rate_before and rng.random() < rates.fail_rate_before:
            return FaultPlan(before=RetryableError("injected failure before applying"))
        if rates.fail_rate_after and rng.random() < rates.fail_rate_after:
            return FaultPlan(after=UncertainOutcomeError("applied, but the answer was lost"))
        return FaultPlan()


def _derive_status(lines: Sequence[OrderLine], current: OrderStatus) -> OrderStatus:
    if all(line.live_quantity == 0 for line in lines):
        return OrderStatus.CANCELLED
    if not any(line.quantity_shipped for line in lines):
        return current if current is OrderStatus.PENDING else OrderStatus.OPEN
    if all(line.quantity_shipped == line.live_quantity for line in lines):
        return OrderStatus.SHIPPED
    return OrderStatus.PARTIALLY_SHIPPED


class MemoryMarketplace:
    """One channel's own state: the stock it shows, its orders, what it received, its faults."""

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] | None = None,
        allow_oversell: bool = True,
        sku_of: Mapping[str, str] | None = None,
        unit_prices: Mapping[str, Decimal] | None = None,
        currency: str = "USD",
    ) -> None:
        self.rng = rng if rng is not None else random.Random(0)
        self.clock = clock if clock is not None else FakeClock()
        self.allow_oversell = allow_oversell
        self.sku_of: dict[str, str] = dict(sku_of or {})
        self.unit_prices: dict[str, Decimal] = dict(unit_prices or {})
        self.currency = currency
        self.faults = Faults()
        self.stock: dict[str, int] = {}
        self.orders: dict[str, Order] = {}
        self.pushes: dict[str, list[int]] = {}
        self.fulfillments: list[ReceivedFulfillment] = []
        self.cancels: list[ReceivedCancel] = []
        self.calls: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.batch_sizes: list[int] = []
        self.in_flight = 0
        self.max_in_flight_seen = 0
        self._order_seq = 0
        self._fulfillment_seq = 0

    def set_stock(self, listing_ref: str, quantity: int) -> None:
        """Set what the channel shows for a listing, as the seller would in the channel's admin."""
        if quantity < 0:
            raise ValueError("stock cannot be negative")
        self.stock[listing_ref] = quantity

    def stock_of(self, listing_ref: str) -> int:
        """What the channel shows for a listing (0 for one it does not know)."""
        return self.stock.get(listing_ref, 0)

    def snapshot(self) -> dict[str, int]:
        """A copy of every listing's quantity as the channel shows it now."""
        return dict(self.stock)

    def fulfillments_by_order(self) -> dict[str, list[ReceivedFulfillment]]:
        """The fulfilments received, grouped by order, in the order they arrived."""
        grouped: dict[str, list[ReceivedFulfillment]] = {}
        for received in self.fulfillments:
            grouped.setdefault(received.order_external_id, []).append(received)
        return grouped

    def order(self, external_id: str) -> Order:
        """One order by its id; KeyError if the channel has none."""
        return self.orders[external_id]

    def place_order(
        self,
        lines: Sequence[tuple[str, int]],
        *,
        external_id: str | None = None,
        buyer_ref: str | None = None,
    ) -> Order:
        """A buyer buys `(listing_ref, quantity)` lines: the channel lowers its own stock, records
        the order and answers it."""
        if not lines or any(quantity < 1 for _, quantity in lines):
            raise ValueError("an order needs lines of at least one unit each")
        wanted: Counter[str] = Counter()
        for ref, quantity in lines:
            wanted[ref] += quantity
        short = sorted(ref for ref, qty in wanted.items() if self.stock_of(ref) < qty)
        if short and not self.allow_oversell:
            raise OutOfStockError(f"not enough stock for {', '.join(short)}")
        self._order_seq += 1
        external_id = external_id or f"O-{self._order_seq}"
        if external_id in self.orders:
            raise ValueError(f"order {external_id} already exists")
        for ref, qty in wanted.items():
            if ref in self.stock:
                # A marketplace that oversells itself still never shows a negative quantity.
                self.stock[ref] = max(0, self.stock[ref] - qty)
        order_lines = [
            OrderLine(
                external_line_id=f"{external_id}-{index}",
                sku=self.sku_of.get(ref, ref),
                quantity=quantity,
                unit_price=Money(self.unit_prices.get(ref, DEFAULT_UNIT_PRICE), self.currency),
                extra={"listing_ref": ref},
            )
            for index, (ref, quantity) in enumerate(lines, start=1)
        ]
        total = sum(
            (line.unit_price.amount * line.quantity for line in order_lines if line.unit_price),
            Decimal(0),
        )
        now = self.clock()
        order = Order(
            external_id=external_id,
            status=OrderStatus.OPEN,
            currency=self.currency,
            updated_at=now,
            lines=tuple(order_lines),
            number=f"#{self._order_seq}",
            total=Money(total, self.currency),
            created_at=now,
            buyer_ref=buyer_ref,
        )
        self.orders[external_id] = order
        return order

    def cancel(self, external_id: str, lines: Mapping[str, int] | None = None) -> Order:
        """Cancel units not yet shipped (all of them when `lines` is None); ValueError when the
        order is fully shipped or a line has fewer units left."""
        order = self.orders[external_id]
        if lines is None and order.status is OrderStatus.CANCELLED:
            return order
        if lines is None and order.status is OrderStatus.SHIPPED:
            raise ValueError(f"order {external_id} is already shipped")
        return self._save(order, self._add(order, lines, "quantity_cancelled"))

    def ship_on_channel(
        self,
        external_id: str,
        lines: Mapping[str, int] | None = None,
        *,
        carrier: str | None = "UPS",
        tracking: str | None = None,
    ) -> Order:
        """The seller ships in the channel's own admin: units not yet shipped (all when `lines` is
        None) become shipped, as one parcel on the order (its tracking made up when not given)."""
        return self._ship(external_id, lines, carrier, tracking, invent=tracking is None)

    def ship_parcel(
        self,
        external_id: str,
        lines: Mapping[str, int],
        *,
        carrier: str | None,
        tracking: str | None,
    ) -> Order:
        """A fulfilment received through the API: these units become shipped, as one parcel with
        exactly this carrier and tracking (none when none was given)."""
        return self._ship(external_id, lines, carrier, tracking, invent=False)

    def add_parcel(
        self,
        external_id: str,
        lines: Sequence[ShipmentLine],
        *,
        carrier: str | None,
        tracking: str | None,
        invent: bool = False,
    ) -> Order:
        """Show a parcel on the order without moving its shipped quantities (what a channel that
        cannot dedupe does with a fulfilment sent twice); answer the order."""
        order = self.orders[external_id]
        parcel_id = self.next_fulfillment_id()
        parcel = ChannelShipment(
            external_id=parcel_id,
            lines=tuple(lines),
            shipped_at=order.updated_at,
            carrier=carrier,
            tracking_number=f"TRK-{parcel_id}" if invent and tracking is None else tracking,
        )
        saved = replace(order, shipments=(*order.shipments, parcel))
        self.orders[external_id] = saved
        return saved

    def _ship(
        self,
        external_id: str,
        lines: Mapping[str, int] | None,
        carrier: str | None,
        tracking: str | None,
        *,
        invent: bool,
    ) -> Order:
        order = self.orders[external_id]
        changed = self._add(order, lines, "quantity_shipped")
        parcel = [
            ShipmentLine(new.external_line_id, new.quantity_shipped - old.quantity_shipped)
            for old, new in zip(order.lines, changed, strict=True)
            if new.quantity_shipped > old.quantity_shipped
        ]
        saved = self._save(order, changed)
        if not parcel:
            return saved
        return self.add_parcel(
            external_id, parcel, carrier=carrier, tracking=tracking, invent=invent
        )

    def update(
        self,
        external_id: str,
        *,
        status: OrderStatus | None = None,
        lines: Sequence[OrderLine] | None = None,
        ship_to: Address | None = None,
        buyer_ref: str | None = None,
    ) -> Order:
        """Change an order as the channel would (only what is given; nothing: a bare touch)."""
        order = self.orders[external_id]
        if ship_to is not None or buyer_ref is not None:
            order = replace(
                order,
                ship_to=ship_to if ship_to is not None else order.ship_to,
                buyer_ref=buyer_ref if buyer_ref is not None else order.buyer_ref,
            )
        return self._save(order, lines if lines is not None else order.lines, status)

    def next_fulfillment_id(self) -> str:
        """A new id for a fulfilment the channel records."""
        self._fulfillment_seq += 1
        return f"F-{self._fulfillment_seq}"

    def _add(self, order: Order, lines: Mapping[str, int] | None, name: str) -> list[OrderLine]:
        known = {line.external_line_id for line in order.lines}
        if lines is not None and (unknown := sorted(set(lines) - known)):
            raise ValueError(f"order {order.external_id} has no line {', '.join(unknown)}")
        changed = []
        for line in order.lines:
            left = line.live_quantity - line.quantity_shipped
            units = left if lines is None else lines.get(line.external_line_id, 0)
            if units < 0 or units > left:
                raise ValueError(f"line {line.external_line_id} has {left} units left, not {units}")
            changed.append(replace(line, **{name: getattr(line, name) + units}))
        return changed

    def _save(
        self, order: Order, lines: Sequence[OrderLine], status: OrderStatus | None = None
    ) -> Order:
        now = self.clock()
        if now <= order.updated_at:
            # The channel's updated-at is strictly increasing per order, whatever the clock says.
            now = order.updated_at + timedelta(microseconds=1)
        saved = replace(
            order,
            lines=tuple(lines),
            status=status or _derive_status(lines, order.status),
            updated_at=now,
        )
        self.orders[order.external_id] = saved
        return saved
