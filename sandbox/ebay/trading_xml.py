"""Trading API XML: reading a request (namespace-blind, DTDs refused) and writing answers in
eBay's shapes (`urn:ebay:apis:eBLBaseComponents`, `Timestamp`, `Ack`, `Errors`, `Version`,
`Build`), including the Order and Item containers.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from starlette.responses import Response

from sandbox.ebay.const import TRADING_BUILD, TRADING_NAMESPACE, TRADING_VERSION
from sandbox.ebay.model import Listing, Order, iso


class XmlRequestError(ValueError):
    """A request body that is not well-formed XML, or carries a DTD."""


def local(tag: str) -> str:
    """A tag without its namespace."""
    return tag.rsplit("}", 1)[-1]


def parse(raw: bytes) -> ET.Element:
    """The request's root element. DTDs (and so entities) are refused: eBay takes none, and
    refusing them keeps entity expansion out of the parser."""
    head = raw[:4096].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in raw.upper():
        raise XmlRequestError("DTDs and entities are not accepted")
    try:
        return ET.fromstring(raw)  # noqa: S314 - no DTD can reach here (checked above)
    except ET.ParseError as err:
        raise XmlRequestError(f"the request is not well-formed XML ({err})") from err


def children(element: ET.Element, name: str) -> list[ET.Element]:
    """Direct children called `name`, whatever their namespace."""
    return [child for child in element if local(child.tag) == name]


def child(element: ET.Element, name: str) -> ET.Element | None:
    """The first direct child called `name`."""
    found = children(element, name)
    return found[0] if found else None


def text(element: ET.Element | None, name: str) -> str | None:
    """The stripped text of the first child called `name` (None when absent or empty)."""
    found = child(element, name) if element is not None else None
    value = (found.text or "").strip() if found is not None else ""
    return value or None


def sub(parent: ET.Element, name: str, value: object = None, **attributes: str) -> ET.Element:
    """Append a child element, with text when `value` is not None."""
    element = ET.SubElement(parent, name, attributes)
    if value is not None:
        element.text = str(value).lower() if isinstance(value, bool) else str(value)
    return element


def amount(parent: ET.Element, name: str, value: Decimal, currency: str) -> ET.Element:
    """An AmountType element."""
    return sub(parent, name, f"{value.quantize(Decimal('0.01'))}", currencyID=currency)


def timestamp(moment: datetime | None) -> str | None:
    """Trading's dateTime (the same UTC form as the REST APIs)."""
    return iso(moment)


@dataclass(frozen=True)
class TradingError:
    """One entry of `Errors`."""

    code: int
    short: str
    long: str | None = None
    severity: str = "Error"  # or "Warning"
    classification: str = "RequestError"  # or "SystemError"
    parameters: Sequence[str] = ()


def envelope(call: str, ack: str, errors: Iterable[TradingError], now: datetime) -> ET.Element:
    """A `{call}Response` with Timestamp, Ack, Errors, Version and Build."""
    root = ET.Element(f"{call}Response", {"xmlns": TRADING_NAMESPACE})
    sub(root, "Timestamp", timestamp(now))
    sub(root, "Ack", ack)
    for error in errors:
        node = sub(root, "Errors")
        sub(node, "ShortMessage", error.short)
        sub(node, "LongMessage", error.long or error.short)
        sub(node, "ErrorCode", error.code)
        sub(node, "SeverityCode", error.severity)
        for number, value in enumerate(error.parameters):
            parameter = sub(node, "ErrorParameters", ParamID=str(number))
            sub(parameter, "Value", value)
        sub(node, "ErrorClassification", error.classification)
    sub(root, "Version", TRADING_VERSION)
    sub(root, "Build", TRADING_BUILD)
    return root


def xml_response(root: ET.Element, status: int = 200) -> Response:
    """An XML answer."""
    body = '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")
    return Response(body.encode("utf-8"), status_code=status, media_type="text/xml;charset=utf-8")


def failure(call: str, error: TradingError, now: datetime, status: int = 200) -> Response:
    """`Ack` Failure with one error."""
    return xml_response(envelope(call, "Failure", [error], now), status)


# ---- containers -----------------------------------------------------------------------------


def order_element(parent: ET.Element, order: Order) -> ET.Element:
    """An OrderType."""
    node = sub(parent, "Order")
    currency = order.currency
    buyer = order.buyer
    sub(node, "OrderID", order.order_id)
    status = "Cancelled" if order.cancelled_at is not None else "Completed"
    sub(node, "OrderStatus", status)
    amount(node, "AmountPaid", order.total, currency)
    checkout = sub(node, "CheckoutStatus")
    sub(checkout, "eBayPaymentStatus", "NoPaymentFailure")
    sub(checkout, "LastModifiedTime", timestamp(order.modified_at))
    sub(checkout, "PaymentMethod", "CreditCard")
    sub(checkout, "Status", "Complete")
    sub(node, "CreatingUserRole", "Buyer")
    sub(node, "CreatedTime", timestamp(order.created_at))
    address = sub(node, "ShippingAddress")
    for name, value in (
        ("Name", buyer.full_name),
        ("Street1", buyer.address_line1),
        ("Street2", buyer.address_line2),
        ("CityName", buyer.city),
        ("StateOrProvince", buyer.state_or_province),
        ("Country", buyer.country_code),
        ("Phone", buyer.phone),
        ("PostalCode", buyer.postal_code),
    ):
        sub(address, name, value if value is not None else "")
    selected = sub(node, "ShippingServiceSelected")
    sub(selected, "ShippingService", "USPSPriority")
    amount(selected, "ShippingServiceCost", order.delivery_cost, currency)
    amount(node, "Subtotal", order.subtotal, currency)
    amount(node, "Total", order.total, currency)
    transactions = sub(node, "TransactionArray")
    for line in order.lines:
        transaction = sub(transactions, "Transaction")
        if buyer.email:
            sub(sub(transaction, "Buyer"), "Email", buyer.email)
        sub(transaction, "CreatedDate", timestamp(order.created_at))
        item = sub(transaction, "Item")
        sub(item, "ItemID", line.legacy_item_id)
        sub(item, "Site", "US")
        sub(item, "Title", line.title)
        if line.legacy_variation_id is None:
            sub(item, "SKU", line.sku)
        sub(transaction, "QuantityPurchased", line.quantity)
        sub(transaction, "TransactionID", line.legacy_transaction_id)
        amount(transaction, "TransactionPrice", line.unit_price, currency)
        if line.legacy_variation_id is not None:
            sub(sub(transaction, "Variation"), "SKU", line.sku)
        sub(transaction, "OrderLineItemID", f"{line.legacy_item_id}-{line.legacy_transaction_id}")
        tracking = [
            f for f in order.fulfillments if any(i == line.line_item_id for i, _ in f.lines)
        ]
        if tracking:
            details = sub(transaction, "ShippingDetails")
            for package in tracking:
                if package.tracking_number is None:
                    continue
                entry = sub(details, "ShipmentTrackingDetails")
                sub(entry, "ShippingCarrierUsed", package.carrier_code)
                sub(entry, "ShipmentTrackingNumber", package.tracking_number)
    sub(node, "BuyerUserID", buyer.username)
    sub(node, "PaidTime", timestamp(order.created_at))
    if order.fulfillment_status == "FULFILLED":
        shipped = max(f.shipped_date for f in order.fulfillments)
        sub(node, "ShippedTime", timestamp(shipped))
    sub(node, "ExtendedOrderID", order.order_id)
    sub(node, "CancelStatus", "CancelComplete" if order.cancelled_at else "NotApplicable")
    return node


def item_element(parent: ET.Element, listings: Sequence[Listing], currency: str) -> ET.Element:
    """An ItemType: a listing, with its variations when it has several.

    Trading's Quantity is the listing's total (available plus sold); buyers can buy
    Quantity - QuantitySold. ReviseInventoryStatus's Quantity, by contrast, is what is left to
    sell."""
    first = listings[0]
    node = sub(parent, "Item")
    sub(node, "ItemID", first.item_id)
    sub(node, "Title", first.title)
    sub(node, "ListingType", "FixedPriceItem")
    sub(node, "InventoryTrackingMethod", "ItemID")
    status = sub(node, "SellingStatus")
    sub(status, "ListingStatus", "Completed" if first.ended else "Active")
    sub(status, "QuantitySold", sum(listing.sold for listing in listings))
    amount(status, "CurrentPrice", first.price, currency)
    sub(node, "Quantity", sum(listing.quantity + listing.sold for listing in listings))
    sub(node, "QuantityAvailable", sum(listing.quantity for listing in listings))
    sub(node, "OutOfStockControl", first.out_of_stock_control)
    if first.variation_id is None:
        sub(node, "SKU", first.sku)
        return node
    variations = sub(node, "Variations")
    for listing in listings:
        variation = sub(variations, "Variation")
        sub(variation, "SKU", listing.sku)
        amount(variation, "StartPrice", listing.price, currency)
        sub(variation, "Quantity", listing.quantity + listing.sold)
        sub(sub(variation, "SellingStatus"), "QuantitySold", listing.sold)
    return node
