"""Orders as the Orders API shows them: 2026-01-01 (`Order`, sections chosen by `includedData`)
and v0 (`Order`, `OrderItem`), in the models' field names and formats.

2026-01-01 shows `buyer`, `recipient`, `proceeds`, `fulfillment`, `packages` and item
`cancellation` only when `includedData` asks for BUYER, RECIPIENT, PROCEEDS, FULFILLMENT,
PACKAGES, CANCELLATION (items and their product always come). A Pending order has no prices yet:
no unit prices, no proceeds, no v0 OrderTotal or ItemPrice (CHANNELS.md, "Orders").
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sandbox.amazon.model import MARKETPLACES, V0_STATUS, Order, OrderItem, iso

INCLUDED_DATA = frozenset(
    {
        "BUYER",
        "RECIPIENT",
        "PROCEEDS",
        "EXPENSE",
        "PROMOTION",
        "CANCELLATION",
        "FULFILLMENT",
        "PACKAGES",
        "TAX",
        "PAYMENT",
        "FULFILLMENT_ORDERS",
    }
)
"""The includedData values of 2026-01-01 (the ones the sandbox has nothing for show nothing)."""

Json = dict[str, Any]


def amount(value: Decimal, currency: str) -> str:
    """A money amount as Amazon writes it ("49.99"; whole yen)."""
    places = Decimal(1) if currency == "JPY" else Decimal("0.01")
    return str(value.quantize(places))


def money(value: Decimal, currency: str) -> Json:
    """A 2026-01-01 `Money`."""
    return {"amount": amount(value, currency), "currencyCode": currency}


def _v0_money(value: Decimal, currency: str) -> Json:
    return {"CurrencyCode": currency, "Amount": amount(value, currency)}


def _item_total(item: OrderItem) -> Decimal:
    return item.unit_price * item.quantity


def _item_2026(order: Order, item: OrderItem, included: frozenset[str]) -> Json:
    product: Json = {
        "asin": item.asin,
        "title": item.title,
        "sellerSku": item.sku,
        "condition": {"conditionType": "NEW", "conditionSubtype": "NEW"},
    }
    if not order.is_pending:
        product["price"] = {"unitPrice": money(item.unit_price, order.currency)}
    shown: Json = {
        "orderItemId": item.order_item_id,
        "quantityOrdered": item.quantity,
        "programs": [],
        "product": product,
    }
    if "PROCEEDS" in included and not order.is_pending:
        total = money(_item_total(item), order.currency)
        shown["proceeds"] = {
            "proceedsTotal": total,
            "breakdowns": [{"type": "ITEM", "subtotal": total}],
        }
    if "CANCELLATION" in included:
        cancellation: Json = {}
        if item.buyer_requested_cancel:
            cancellation["cancellationRequest"] = {
                "requester": "BUYER",
                "cancelReason": "Buyer requested cancellation",
            }
        if order.status == "CANCELLED":
            cancellation["cancellationExecution"] = {
                "cancelledBy": "MERCHANT",
                "cancelReason": order.cancel_reason or "Cancelled",
            }
        if cancellation:
            shown["cancellation"] = cancellation
    if "FULFILLMENT" in included:
        unfulfilled = 0 if order.status == "CANCELLED" else item.unshipped
        shown["fulfillment"] = {
            "quantityFulfilled": item.shipped,
            "quantityUnfulfilled": unfulfilled,
        }
    return shown


def order_2026(order: Order, included: frozenset[str]) -> Json:
    """An Orders API 2026-01-01 `Order`."""
    name = MARKETPLACES.get(order.marketplace_id, (order.marketplace_id, "", ""))[0]
    shown: Json = {
        "orderId": order.order_id,
        "createdTime": iso(order.created_at),
        "lastUpdatedTime": iso(order.updated_at),
        "programs": [],
        "salesChannel": {
            "channelName": "AMAZON",
            "marketplaceId": order.marketplace_id,
            "marketplaceName": name,
        },
    }
    buyer = order.buyer
    if "BUYER" in included:
        shown["buyer"] = _drop_none(
            {
                "buyerName": buyer.name,
                "buyerEmail": buyer.email,
                "buyerCompanyName": buyer.company,
            }
        )
    if "RECIPIENT" in included:
        shown["recipient"] = {
            "deliveryAddress": _drop_none(
                {
                    "name": buyer.name,
                    "companyName": buyer.company,
                    "addressLine1": buyer.address_line1,
                    "addressLine2": buyer.address_line2,
                    "city": buyer.city,
                    "stateOrRegion": buyer.state_or_region,
                    "postalCode": buyer.postal_code,
                    "countryCode": buyer.country_code,
                    "phone": buyer.phone,
                    "addressType": "RESIDENTIAL",
                }
            )
        }
    if "PROCEEDS" in included and not order.is_pending:
        items = sum((_item_total(i) for i in order.items), Decimal(0))
        breakdowns = [{"type": "ITEM", "subtotal": money(items, order.currency)}]
        if order.shipping_price:
            breakdowns.append(
                {"type": "SHIPPING", "subtotal": money(order.shipping_price, order.currency)}
            )
        shown["proceeds"] = {
            "grandTotal": money(items + order.shipping_price, order.currency),
            "breakdowns": breakdowns,
        }
    if "FULFILLMENT" in included:
        shown["fulfillment"] = {
            "fulfillmentStatus": order.status,
            "fulfilledBy": order.fulfilled_by,
            "fulfillmentServiceLevel": "STANDARD",
            "shipByWindow": {
                "earliestDateTime": iso(order.created_at),
                "latestDateTime": iso(order.created_at + timedelta(days=2)),
            },
            "deliverByWindow": {
                "earliestDateTime": iso(order.created_at + timedelta(days=3)),
                "latestDateTime": iso(order.created_at + timedelta(days=7)),
            },
        }
    shown["orderItems"] = [_item_2026(order, item, included) for item in order.items]
    if "PACKAGES" in included and order.packages:
        shown["packages"] = [
            {
                "packageReferenceId": package.package_reference_id,
                "createdTime": iso(package.created_at),
                "packageStatus": {"status": "SHIPPED"},
                "carrier": package.carrier_name or package.carrier_code,
                "shipTime": package.ship_date,
                "shippingService": package.shipping_method or "Standard",
                "trackingNumber": package.tracking_number,
                "packageItems": [
                    {"orderItemId": item_id, "quantity": units} for item_id, units in package.items
                ],
            }
            for package in order.packages
        ]
    return shown


def order_v0(order: Order) -> Json:
    """An Orders API v0 `Order` (no buyer data: v0 wants a Restricted Data Token for that)."""
    name = MARKETPLACES.get(order.marketplace_id, (order.marketplace_id, "", ""))[0]
    shipped = sum(i.shipped for i in order.items)
    unshipped = 0 if order.status == "CANCELLED" else sum(i.unshipped for i in order.items)
    shown: Json = {
        "AmazonOrderId": order.order_id,
        "PurchaseDate": iso(order.created_at),
        "LastUpdateDate": iso(order.updated_at),
        "OrderStatus": V0_STATUS[order.status],
        "FulfillmentChannel": order.fulfillment_type,
        "SalesChannel": name,
        "ShipServiceLevel": "Std Dom",
        "NumberOfItemsShipped": shipped,
        "NumberOfItemsUnshipped": unshipped,
        "PaymentMethod": "Other",
        "MarketplaceId": order.marketplace_id,
        "ShipmentServiceLevelCategory": "Standard",
        "OrderType": "StandardOrder",
        "EarliestShipDate": iso(order.created_at),
        "LatestShipDate": iso(order.created_at + timedelta(days=2)),
        "IsBusinessOrder": False,
        "IsPrime": False,
        "IsPremiumOrder": False,
        "IsGlobalExpressEnabled": False,
        "IsReplacementOrder": False,
        "IsSoldByAB": False,
        "IsISPU": False,
        "IsAccessPointOrder": False,
        "HasRegulatedItems": False,
    }
    if not order.is_pending:
        total = sum((_item_total(i) for i in order.items), order.shipping_price)
        shown["OrderTotal"] = _v0_money(total, order.currency)
    return shown


def order_items_v0(order: Order) -> list[Json]:
    """The order's v0 `OrderItem`s."""
    shown = []
    for item in order.items:
        entry: Json = {
            "ASIN": item.asin,
            "SellerSKU": item.sku,
            "OrderItemId": item.order_item_id,
            "Title": item.title,
            "QuantityOrdered": item.quantity,
            "QuantityShipped": item.shipped,
            "ProductInfo": {"NumberOfItems": "1"},
            "IsGift": "false",
            "ConditionId": "New",
            "ConditionSubtypeId": "New",
            "IsTransparency": False,
            "SerialNumberRequired": False,
            "BuyerRequestedCancel": {
                "IsBuyerRequestedCancel": "true" if item.buyer_requested_cancel else "false",
                "BuyerCancelReason": "Buyer requested cancellation"
                if item.buyer_requested_cancel
                else "",
            },
        }
        if not order.is_pending:
            entry["ItemPrice"] = _v0_money(_item_total(item), order.currency)
        shown.append(entry)
    return shown


def _drop_none(values: Json) -> Json:
    return {k: v for k, v in values.items() if v is not None}
