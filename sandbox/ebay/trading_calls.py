"""The Trading calls the sandbox answers, each `(sandbox, request root) -> XML response`.

ReviseInventoryStatus identifies each listing by ItemID (a single-variation listing), by SKU,
or by both (a variation); `Quantity` is what is left to sell. Each InventoryStatus is applied or
refused on its own: unknown (17), an Inventory-API listing (which Trading cannot revise), ended
(291), or out of revisions for today. An unchanged one is applied with warning 21917091 and not
counted as a revision.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from starlette.responses import Response

from sandbox.ebay.const import (
    CODE_BAD_REQUEST,
    CODE_INVENTORY_LISTING,
    CODE_ITEM_NOT_FOUND,
    CODE_LISTING_ENDED,
    CODE_ORDER_NOT_FOUND,
    CODE_REDUNDANT_REVISION,
    CODE_REVISION_LIMIT,
    CODE_TOO_MANY_STATUSES,
    MY_EBAY_MAX_PER_PAGE,
    REVISE_INVENTORY_MAX,
    TRADING_ORDERS_MAX_AGE_DAYS,
    TRADING_ORDERS_MAX_PER_PAGE,
)
from sandbox.ebay.model import QUANTITY_LIMIT, Listing, Order, World
from sandbox.ebay.revisions import Change, Outcome, revise
from sandbox.ebay.trading_xml import (
    TradingError,
    amount,
    child,
    children,
    envelope,
    item_element,
    order_element,
    sub,
    text,
    xml_response,
)

if TYPE_CHECKING:
    from sandbox.ebay.app import EbaySandbox


class CallError(Exception):
    """The whole call is refused (`Ack` Failure)."""

    def __init__(self, code: int, short: str, long: str | None = None) -> None:
        super().__init__(short)
        self.error = TradingError(code, short, long)


def _ack(errors: list[TradingError], applied: int) -> str:
    if not any(e.severity == "Error" for e in errors):
        return "Warning" if errors else "Success"
    return "PartialFailure" if applied else "Failure"


# ---- ReviseInventoryStatus ------------------------------------------------------------------


def _status_listing(sandbox: EbaySandbox, status: ET.Element) -> Listing | TradingError:
    store = sandbox.store
    item_id, sku = text(status, "ItemID"), text(status, "SKU")
    named = [value for value in (item_id, sku) if value is not None]
    listing: Listing | None = None
    if sku is not None:
        listing = store.listings.get(sku)
        if listing is not None and item_id is not None and listing.item_id != item_id:
            listing = None
    elif item_id is not None:
        variations = store.items.get(item_id, [])
        if len(variations) > 1:
            return TradingError(
                CODE_BAD_REQUEST,
                "SKU required.",
                f"Item {item_id} has variations: name the variation by its SKU.",
                parameters=named,
            )
        listing = variations[0] if variations else None
    if listing is None:
        return TradingError(
            CODE_ITEM_NOT_FOUND,
            "Item cannot be accessed.",
            "This item cannot be accessed because the listing has been deleted or you are not "
            "the seller.",
            parameters=named,
        )
    if listing.world is not World.TRADING:
        return TradingError(
            CODE_INVENTORY_LISTING,
            "Inventory API listing.",
            "This listing was created with the Inventory API: revise it with the Inventory API.",
            parameters=_named(listing),
        )
    return listing


def _named(listing: Listing) -> list[str]:
    """An item error's ErrorParameters: the ItemID, then the SKU."""
    return [listing.item_id, listing.sku]


def _status_change(status: ET.Element, listing: Listing) -> Change | TradingError:
    quantity_text, price_text = text(status, "Quantity"), text(status, "StartPrice")
    quantity = price = None
    named = _named(listing)
    if quantity_text is not None:
        if not quantity_text.isdigit() or int(quantity_text) > QUANTITY_LIMIT:
            return TradingError(
                CODE_BAD_REQUEST,
                "Invalid quantity.",
                "Quantity must be 0 or more.",
                parameters=named,
            )
        quantity = int(quantity_text)
    if price_text is not None:
        try:
            price = Decimal(price_text).quantize(Decimal("0.01"))
        except InvalidOperation:
            price = Decimal("0")
        if not price.is_finite() or price <= 0:
            return TradingError(
                CODE_BAD_REQUEST, "Invalid price.", "StartPrice > 0.", parameters=named
            )
    if quantity is None and price is None:
        return TradingError(
            CODE_BAD_REQUEST,
            "Nothing to revise.",
            "Give Quantity or StartPrice.",
            parameters=named,
        )
    return Change(listing, quantity, price)


def revise_inventory_status(sandbox: EbaySandbox, root: ET.Element) -> Response:
    """ReviseInventoryStatus: up to four listings' quantity and price."""
    statuses = children(root, "InventoryStatus")
    if not statuses:
        raise CallError(CODE_BAD_REQUEST, "No InventoryStatus.", "Give 1 to 4 InventoryStatus.")
    if len(statuses) > REVISE_INVENTORY_MAX:
        raise CallError(
            CODE_TOO_MANY_STATUSES,
            "Too many InventoryStatus.",
            f"A call revises at most {REVISE_INVENTORY_MAX} items or variations; "
            f"{len(statuses)} were given.",
        )
    errors: list[TradingError] = []
    changes: list[Change] = []
    for status in statuses:
        found = _status_listing(sandbox, status)
        change = _status_change(status, found) if isinstance(found, Listing) else found
        if isinstance(change, TradingError):
            errors.append(change)
        else:
            changes.append(change)
    outcomes = revise(sandbox.store, sandbox.limits, changes)
    applied = [c for c, o in zip(changes, outcomes, strict=True) if o in _APPLIED]
    for change, outcome in zip(changes, outcomes, strict=True):
        named = _named(change.listing)
        if outcome is Outcome.REDUNDANT:
            errors.append(
                TradingError(
                    CODE_REDUNDANT_REVISION,
                    "Requested StartPrice and Quantity revision is redundant.",
                    "The existing price and quantity values are identical to those specified "
                    "in the request and, therefore, have not been modified.",
                    severity="Warning",
                    parameters=named,
                )
            )
        elif outcome is Outcome.LIMIT:
            errors.append(
                TradingError(
                    CODE_REVISION_LIMIT,
                    "Revision limit reached.",
                    "This listing has been revised the maximum number of times allowed today.",
                    parameters=named,
                )
            )
        elif outcome is Outcome.ENDED:
            errors.append(
                TradingError(
                    CODE_LISTING_ENDED, "Listing ended.", "The listing has ended.", parameters=named
                )
            )
    root_out = envelope("ReviseInventoryStatus", _ack(errors, len(applied)), errors, _now(sandbox))
    currency = sandbox.store.currency
    for change in applied:
        listing = change.listing
        node = sub(root_out, "InventoryStatus")
        sub(node, "ItemID", listing.item_id)
        sub(node, "SKU", listing.sku)
        amount(node, "StartPrice", listing.price, currency)
        sub(node, "Quantity", listing.quantity)
    for item_id in dict.fromkeys(change.listing.item_id for change in applied):
        fees = sub(root_out, "Fees")
        sub(fees, "ItemID", item_id)
        fee = sub(fees, "Fee")
        sub(fee, "Name", "ListingFee")
        amount(fee, "Fee", Decimal("0"), currency)
    return xml_response(root_out)


_APPLIED = frozenset({Outcome.REVISED, Outcome.REDUNDANT})


# ---- orders -----------------------------------------------------------------------------


def _now(sandbox: EbaySandbox) -> datetime:
    return sandbox.clock.now()


def _time(element: ET.Element, name: str) -> datetime | None:
    value = text(element, name)
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as err:
        raise CallError(CODE_BAD_REQUEST, f"Invalid {name}.", f"{name} is not a dateTime.") from err


def _positive(element: ET.Element | None, name: str, default: int, high: int) -> int:
    value = text(element, name) if element is not None else None
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= high:
        raise CallError(CODE_BAD_REQUEST, f"Invalid {name}.", f"{name} must be 1 to {high}.")
    return int(value)


def _selected_orders(sandbox: EbaySandbox, root: ET.Element) -> list[Order]:
    store = sandbox.store
    now = _now(sandbox)
    oldest = now - timedelta(days=TRADING_ORDERS_MAX_AGE_DAYS)
    id_array = child(root, "OrderIDArray")
    ids = [(e.text or "").strip() for e in children(id_array, "OrderID")] if id_array else []
    if ids:
        found = [store.orders[i] for i in dict.fromkeys(ids) if i in store.orders]
        return [o for o in found if o.created_at >= oldest]
    created = (_time(root, "CreateTimeFrom"), _time(root, "CreateTimeTo"))
    modified = (_time(root, "ModTimeFrom"), _time(root, "ModTimeTo"))
    days = text(root, "NumberOfDays")
    if days is not None:
        if not days.isdigit() or not 1 <= int(days) <= 30:
            raise CallError(CODE_BAD_REQUEST, "Invalid NumberOfDays.", "NumberOfDays: 1 to 30.")
        created = (now - timedelta(days=int(days)), None)
    elif created[0] is None and modified[0] is None:
        raise CallError(
            CODE_BAD_REQUEST,
            "No date range.",
            "Give OrderIDArray, CreateTimeFrom, ModTimeFrom or NumberOfDays.",
        )
    use_created = created[0] is not None
    start, end = created if use_created else modified
    picked = []
    for order in store.orders.values():
        moment = order.created_at if use_created else order.modified_at
        if order.created_at < oldest or (start and moment < start) or (end and moment > end):
            continue
        picked.append(order)
    return sorted(picked, key=lambda o: o.created_at)


def get_orders(sandbox: EbaySandbox, root: ET.Element) -> Response:
    """GetOrders: the seller's orders by id or date range (90 days back at most), paged."""
    orders = _selected_orders(sandbox, root)
    pagination = child(root, "Pagination")
    per_page = _positive(pagination, "EntriesPerPage", 100, TRADING_ORDERS_MAX_PER_PAGE)
    page = _positive(pagination, "PageNumber", 1, 10**6)
    shown = orders[(page - 1) * per_page : page * per_page]
    out = envelope("GetOrders", "Success", [], _now(sandbox))
    result = sub(out, "PaginationResult")
    sub(result, "TotalNumberOfPages", max((len(orders) + per_page - 1) // per_page, 1))
    sub(result, "TotalNumberOfEntries", len(orders))
    sub(out, "HasMoreOrders", page * per_page < len(orders))
    array = sub(out, "OrderArray")
    for order in shown:
        order_element(array, order)
    sub(out, "OrdersPerPage", per_page)
    sub(out, "PageNumber", page)
    sub(out, "ReturnedOrderCountActual", len(shown))
    return xml_response(out)


def _order_named(sandbox: EbaySandbox, root: ET.Element) -> tuple[Order, str | None]:
    """The order a CompleteSale names, and the line item when it names one."""
    store = sandbox.store
    order_id = text(root, "OrderID")
    line_ref = text(root, "OrderLineItemID")
    item_id, transaction_id = text(root, "ItemID"), text(root, "TransactionID")
    if line_ref is None and item_id and transaction_id:
        line_ref = f"{item_id}-{transaction_id}"
    for order in store.orders.values():
        if order_id is not None and order.order_id == order_id:
            return order, None
        for line in order.lines:
            if line_ref == f"{line.legacy_item_id}-{line.legacy_transaction_id}":
                return order, line.line_item_id
    raise CallError(
        CODE_ORDER_NOT_FOUND, "Order not found.", "No order of the seller has that identifier."
    )


def complete_sale(sandbox: EbaySandbox, root: ET.Element) -> Response:
    """CompleteSale: mark an order (or one line) shipped, with tracking when given.

    The same tracking number again adds nothing (unsure how eBay treats it); `Shipped` false
    is accepted and changes nothing here."""
    order, line_id = _order_named(sandbox, root)
    if order.cancelled_at is not None:
        raise CallError(CODE_BAD_REQUEST, "Order cancelled.", "The order is cancelled.")
    shipment = child(root, "Shipment")
    details = child(shipment, "ShipmentTrackingDetails") if shipment is not None else None
    carrier = text(details, "ShippingCarrierUsed")
    tracking = text(details, "ShipmentTrackingNumber")
    if (carrier is None) != (tracking is None):
        raise CallError(
            CODE_BAD_REQUEST,
            "Incomplete tracking.",
            "ShippingCarrierUsed and ShipmentTrackingNumber go together.",
        )
    shipped = text(root, "Shipped") in {"true", "1"} or tracking is not None
    known = any(f.tracking_number == tracking for f in order.fulfillments) and tracking
    if shipped and not known:
        if line_id is not None:
            picked = [
                (x.line_item_id, x.quantity) for x in order.lines if x.line_item_id == line_id
            ]
        else:
            picked = [
                (line.line_item_id, line.quantity - line.shipped)
                for line in order.lines
                if line.shipped < line.quantity
            ]
            # Every unit shipped already: the new tracking number covers the whole order.
            picked = picked or [(line.line_item_id, line.quantity) for line in order.lines]
        sandbox.store.ship(
            order,
            picked,
            carrier_code=carrier,
            tracking_number=tracking,
            shipped_date=_time(shipment, "ShippedTime") if shipment is not None else None,
            source="trading",
        )
    return xml_response(envelope("CompleteSale", "Success", [], _now(sandbox)))


# ---- listings ---------------------------------------------------------------------------


def get_item(sandbox: EbaySandbox, root: ET.Element) -> Response:
    """GetItem: one listing by ItemID (or a single-variation listing's SKU)."""
    store = sandbox.store
    item_id, sku = text(root, "ItemID"), text(root, "SKU")
    if item_id is None and sku is not None and sku in store.listings:
        item_id = store.listings[sku].item_id
    listings = store.items.get(item_id or "", [])
    if not listings:
        raise CallError(CODE_ITEM_NOT_FOUND, "Item cannot be accessed.", "No such item.")
    out = envelope("GetItem", "Success", [], _now(sandbox))
    item_element(out, listings, store.currency)
    return xml_response(out)


def get_my_ebay_selling(sandbox: EbaySandbox, root: ET.Element) -> Response:
    """GetMyeBaySelling: the ActiveList (listings on sale, both worlds), paged."""
    store = sandbox.store
    active = child(root, "ActiveList")
    pagination = child(active, "Pagination") if active is not None else None
    per_page = _positive(pagination, "EntriesPerPage", 25, MY_EBAY_MAX_PER_PAGE)
    page = _positive(pagination, "PageNumber", 1, 10**6)
    items = [group for group in store.items.values() if not group[0].ended]
    shown = items[(page - 1) * per_page : page * per_page]
    out = envelope("GetMyeBaySelling", "Success", [], _now(sandbox))
    if active is not None and text(active, "Include") != "false":
        section = sub(out, "ActiveList")
        array = sub(section, "ItemArray")
        for group in shown:
            item_element(array, group, store.currency)
        result = sub(section, "PaginationResult")
        sub(result, "TotalNumberOfPages", max((len(items) + per_page - 1) // per_page, 1))
        sub(result, "TotalNumberOfEntries", len(items))
    return xml_response(out)


Call = Callable[["EbaySandbox", ET.Element], Response]
CALLS: dict[str, Call] = {
    "ReviseInventoryStatus": revise_inventory_status,
    "GetOrders": get_orders,
    "CompleteSale": complete_sale,
    "GetItem": get_item,
    "GetMyeBaySelling": get_my_ebay_selling,
}
"""Call name -> handler."""
