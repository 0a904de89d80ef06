"""Records shown as the REST APIs show them: a Fulfillment API `Order` and `ShippingFulfillment`,
an Inventory API `InventoryItem` and `Offer`. Money is `{"value": "12.50", "currency": "USD"}`
(strings, two decimals); times are UTC with milliseconds (`iso`).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sandbox.ebay.model import Buyer, Listing, Order, ShippingFulfillment, iso


def money(amount: Decimal, currency: str) -> dict[str, str]:
    """An eBay Amount."""
    return {"value": f"{amount.quantize(Decimal('0.01'))}", "currency": currency}


def _address(buyer: Buyer) -> dict[str, Any]:
    fields = {
        "addressLine1": buyer.address_line1,
        "addressLine2": buyer.address_line2,
        "city": buyer.city,
        "stateOrProvince": buyer.state_or_province,
        "postalCode": buyer.postal_code,
        "countryCode": buyer.country_code,
    }
    return {key: value for key, value in fields.items() if value is not None}


def _contact(buyer: Buyer) -> dict[str, Any]:
    contact: dict[str, Any] = {"fullName": buyer.full_name, "contactAddress": _address(buyer)}
    if buyer.phone:
        contact["primaryPhone"] = {"phoneNumber": buyer.phone}
    if buyer.email:
        contact["email"] = buyer.email
    return {key: value for key, value in contact.items() if value is not None}


def fulfillment_href(base_url: str, fulfillment: ShippingFulfillment) -> str:
    """The getShippingFulfillment URI of a package."""
    return (
        f"{base_url}/sell/fulfillment/v1/order/{fulfillment.order_id}"
        f"/shipping_fulfillment/{fulfillment.fulfillment_id}"
    )


def order_json(order: Order, base_url: str) -> dict[str, Any]:
    """A Fulfillment API Order (the fields the sandbox keeps)."""
    currency = order.currency
    buyer = order.buyer
    delivery_from = order.created_at + timedelta(days=3)
    lines = []
    for line in order.lines:
        shown: dict[str, Any] = {
            "lineItemId": line.line_item_id,
            "legacyItemId": line.legacy_item_id,
            "sku": line.sku,
            "title": line.title,
            "lineItemCost": money(line.cost, currency),
            "quantity": line.quantity,
            "soldFormat": "FIXED_PRICE",
            "listingMarketplaceId": order.marketplace_id,
            "purchaseMarketplaceId": order.marketplace_id,
            "lineItemFulfillmentStatus": line.fulfillment_status,
            "total": money(line.cost, currency),
            "deliveryCost": {"shippingCost": money(Decimal("0"), currency)},
            "appliedPromotions": [],
            "taxes": [],
            "properties": {"buyerProtection": True},
            "lineItemFulfillmentInstructions": {
                "minEstimatedDeliveryDate": iso(delivery_from),
                "maxEstimatedDeliveryDate": iso(delivery_from + timedelta(days=4)),
                "shipByDate": iso(order.created_at + timedelta(days=2)),
                "guaranteedDelivery": False,
            },
        }
        if line.legacy_variation_id is not None:
            shown["legacyVariationId"] = line.legacy_variation_id
        lines.append(shown)
    cancel: dict[str, Any] = {"cancelState": order.cancel_state, "cancelRequests": []}
    if order.cancelled_at is not None:
        cancel["cancelledDate"] = iso(order.cancelled_at)
    return {
        "orderId": order.order_id,
        "legacyOrderId": order.legacy_order_id,
        "creationDate": iso(order.created_at),
        "lastModifiedDate": iso(order.modified_at),
        "orderFulfillmentStatus": order.fulfillment_status,
        "orderPaymentStatus": "PAID",
        "sellerId": "sandbox_seller",
        "buyer": {
            "username": buyer.username,
            "taxAddress": {
                key: value
                for key, value in _address(buyer).items()
                if key in {"stateOrProvince", "postalCode", "countryCode"}
            },
            "buyerRegistrationAddress": _contact(buyer),
        },
        "pricingSummary": {
            "priceSubtotal": money(order.subtotal, currency),
            "deliveryCost": money(order.delivery_cost, currency),
            "total": money(order.total, currency),
        },
        "cancelStatus": cancel,
        "paymentSummary": {
            "totalDueSeller": money(order.total, currency),
            "payments": [
                {
                    "paymentMethod": "EBAY",
                    "paymentDate": iso(order.created_at),
                    "amount": money(order.total, currency),
                    "paymentStatus": "PAID",
                }
            ],
            "refunds": [],
        },
        "fulfillmentStartInstructions": [
            {
                "fulfillmentInstructionsType": "SHIP_TO",
                "minEstimatedDeliveryDate": iso(delivery_from),
                "maxEstimatedDeliveryDate": iso(delivery_from + timedelta(days=4)),
                "ebaySupportedFulfillment": False,
                "shippingStep": {
                    "shipTo": _contact(buyer),
                    "shippingCarrierCode": "USPS",
                    "shippingServiceCode": "USPSPriority",
                },
            }
        ],
        "fulfillmentHrefs": [fulfillment_href(base_url, f) for f in order.fulfillments],
        "lineItems": lines,
        "salesRecordReference": order.order_id.rsplit("-", 1)[-1],
        "totalFeeBasisAmount": money(order.total, currency),
        "totalMarketplaceFee": money(order.total * Decimal("0.13"), currency),
    }


def fulfillment_json(fulfillment: ShippingFulfillment) -> dict[str, Any]:
    """A Fulfillment API ShippingFulfillment."""
    shown: dict[str, Any] = {
        "fulfillmentId": fulfillment.fulfillment_id,
        "lineItems": [{"lineItemId": i, "quantity": n} for i, n in fulfillment.lines],
        "shippedDate": iso(fulfillment.shipped_date),
    }
    if fulfillment.carrier_code is not None:
        shown["shippingCarrierCode"] = fulfillment.carrier_code
    if fulfillment.tracking_number is not None:
        shown["shipmentTrackingNumber"] = fulfillment.tracking_number
    return shown


def inventory_item_json(listing: Listing, locale: str) -> dict[str, Any]:
    """An Inventory API InventoryItem (of an Inventory-world listing)."""
    return {
        "sku": listing.sku,
        "locale": locale,
        "condition": "NEW",
        "product": {"title": listing.title},
        "availability": {"shipToLocationAvailability": {"quantity": listing.quantity}},
    }


def offer_json(listing: Listing, currency: str, marketplace_id: str) -> dict[str, Any]:
    """An Inventory API Offer, published as a listing."""
    return {
        "offerId": listing.offer_id,
        "sku": listing.sku,
        "marketplaceId": marketplace_id,
        "format": "FIXED_PRICE",
        "availableQuantity": listing.quantity,
        "pricingSummary": {"price": money(listing.price, currency)},
        "listing": {
            "listingId": listing.item_id,
            "listingStatus": "ENDED" if listing.ended else "ACTIVE",
            "soldQuantity": listing.sold,
        },
        "status": "PUBLISHED",
    }
