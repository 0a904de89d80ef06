"""Pure builders of the connector's GraphQL inputs, and readers of the answers they get.

Kept apart from mapper.py (orders) by role: stock (inventorySetQuantities, inventory levels,
variants as listings) and status out (fulfilment orders -> fulfillmentCreate input).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.base import (
    ChannelListing,
    FulfillmentRequest,
    RawPayload,
    ShipmentLine,
    StockTarget,
)
from connectors.shopify.const import (
    OPEN_FULFILLMENT_ORDER_STATUSES,
    STALE,
    STOCK_NAME,
    STOCK_REASON,
)
from connectors.shopify.mapper import listing_ref, split_listing_ref


class UnfulfillableError(ValueError):
    """The shipment cannot be put on the order's open fulfilment orders (the reason says why)."""


def set_quantities_input(targets: Sequence[StockTarget]) -> dict[str, Any]:
    """The `input` of inventorySetQuantities: absolute "available" figures, each compared with
    what we believe Shopify holds (`changeFromQuantity`; an explicit null opts out, as 2026-04
    requires the field on every entry)."""
    quantities = []
    for target in targets:
        item, location = split_listing_ref(target.listing_ref)
        quantities.append(
            {
                "inventoryItemId": item,
                "locationId": location,
                "quantity": target.quantity,
                "changeFromQuantity": target.expected,
            }
        )
    return {"name": STOCK_NAME, "reason": STOCK_REASON, "quantities": quantities}


def _entry_index(path: object) -> int | None:
    """The quantities entry a userError's `field` path names (["input","quantities","3",...])."""
    if not isinstance(path, list):
        return None
    for position, part in enumerate(path[:-1]):
        if part == "quantities":
            following = path[position + 1]
            if isinstance(following, int):
                return following
            if isinstance(following, str) and following.isdigit():
                return int(following)
    return None


@dataclass
class SetAnswer:
    """inventorySetQuantities' userErrors, sorted by entry."""

    stale: set[int] = field(default_factory=set)
    rejected: dict[int, str] = field(default_factory=dict)
    unattributed: list[str] = field(default_factory=list)

    @property
    def is_clean(self) -> bool:
        """No user error at all: every entry was applied."""
        return not (self.stale or self.rejected or self.unattributed)


def read_set_answer(payload: object, size: int) -> SetAnswer:
    """Sort the mutation's userErrors into stale entries, refused entries and the rest."""
    answer = SetAnswer()
    errors = payload.get("userErrors") if isinstance(payload, Mapping) else None
    for error in errors or ():
        if not isinstance(error, Mapping):
            continue
        code = error.get("code")
        message = str(error.get("message") or code or "refused")
        index = _entry_index(error.get("field"))
        if index is None or not 0 <= index < size:
            answer.unattributed.append(f"{code}: {message}" if code else message)
        elif code == STALE:
            answer.stale.add(index)
        else:
            answer.rejected[index] = f"{code}: {message}" if code else message
    return answer


def _available(level: object) -> int | None:
    if not isinstance(level, Mapping):
        return None
    for quantity in level.get("quantities") or ():
        if isinstance(quantity, Mapping) and quantity.get("name") == STOCK_NAME:
            value = quantity.get("quantity")
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def stock_from_items(nodes: Sequence[object], location_id: str) -> dict[str, int]:
    """listing ref -> available, from `nodes(ids:)` InventoryItems read at one location (items
    not stocked there, or unknown ids, are left out)."""
    shown = {}
    for node in nodes:
        if not isinstance(node, Mapping) or not node.get("id"):
            continue
        available = _available(node.get("inventoryLevel"))
        if available is not None:
            shown[listing_ref(str(node["id"]), location_id)] = available
    return shown


def listing_from_variant(node: RawPayload, location_id: str) -> ChannelListing | None:
    """A variant's inventory item at a location, as a listing; None when Shopify does not
    track its stock or does not stock it there (nothing to set)."""
    item = node.get("inventoryItem")
    if not isinstance(item, Mapping) or not item.get("id") or item.get("tracked") is False:
        return None
    level = item.get("inventoryLevel")
    if not isinstance(level, Mapping):
        return None
    sku = node.get("sku")
    return ChannelListing(
        listing_ref=listing_ref(str(item["id"]), location_id),
        sku=sku if isinstance(sku, str) and sku else None,
        quantity=_available(level),
        extra={
            "variant_id": str(node["id"]),
            "inventory_item_id": str(item["id"]),
            "location_id": location_id,
        },
    )


@dataclass(frozen=True)
class _OpenUnits:
    location: str
    fulfillment_order_id: str
    item_id: str  # the fulfilment order line item
    line_id: str  # the order's line item
    remaining: int


def _open_units(order: RawPayload) -> list[_OpenUnits]:
    found = []
    for fo in order["fulfillmentOrders"]["nodes"]:
        if str(fo.get("status")) not in OPEN_FULFILLMENT_ORDER_STATUSES:
            continue
        assigned = fo.get("assignedLocation") or {}
        location = str((assigned.get("location") or {}).get("id") or "unassigned")
        for item in fo["lineItems"]["nodes"]:
            remaining = item.get("remainingQuantity")
            if isinstance(remaining, int) and not isinstance(remaining, bool) and remaining > 0:
                found.append(
                    _OpenUnits(
                        location,
                        str(fo["id"]),
                        str(item["id"]),
                        str(item["lineItem"]["id"]),
                        remaining,
                    )
                )
    return found


def fulfillment_input(
    order: RawPayload, request: FulfillmentRequest, *, notify_customer: bool
) -> dict[str, Any]:
    """The `fulfillment` input of fulfillmentCreate: the request's units taken from the order's
    open fulfilment orders (all its open units when the request names no line), which must all
    sit at one location (Shopify's rule for one call). UnfulfillableError otherwise."""
    open_units = _open_units(order)
    wanted = shipment_units(request.lines)
    taken: dict[str, dict[str, int]] = defaultdict(dict)  # fulfilment order -> item -> units
    locations: set[str] = set()
    if not wanted:
        for entry in open_units:
            taken[entry.fulfillment_order_id][entry.item_id] = entry.remaining
            locations.add(entry.location)
    for line_id, units in sorted(wanted.items()):
        left = units
        for entry in open_units:
            if entry.line_id != line_id or left == 0:
                continue
            take = min(left, entry.remaining)
            taken[entry.fulfillment_order_id][entry.item_id] = take
            locations.add(entry.location)
            left -= take
        if left:
            raise UnfulfillableError(
                f"line {line_id}: {left} of {units} unit(s) are not open on any fulfilment order"
            )
    if not taken:
        raise UnfulfillableError("the order has no open fulfilment order line to ship")
    if len(locations) > 1:
        raise UnfulfillableError(
            "the units sit on fulfilment orders of more than one location; record one "
            "shipment per location"
        )
    body: dict[str, Any] = {
        "notifyCustomer": notify_customer,
        "lineItemsByFulfillmentOrder": [
            {
                "fulfillmentOrderId": fo_id,
                "fulfillmentOrderLineItems": [
                    {"id": item_id, "quantity": n} for item_id, n in items.items()
                ],
            }
            for fo_id, items in taken.items()
        ],
    }
    tracking = {
        key: value
        for key, value in (
            ("company", request.carrier),
            ("number", request.tracking_number),
            ("url", request.tracking_url),
        )
        if value
    }
    if tracking:
        body["trackingInfo"] = tracking
    return body


def shipment_units(lines: Sequence[ShipmentLine]) -> Counter[str]:
    """Units per order line of a parcel, to compare two parcels."""
    units: Counter[str] = Counter()
    for line in lines:
        units[line.external_line_id] += line.quantity
    return units


def check_listing_refs(refs: Sequence[str]) -> None:
    """InvalidValueError for the first ref that is not an inventory item at a location."""
    for ref in refs:
        split_listing_ref(ref)
