"""Orders and fulfilments as Admin GraphQL objects; `View` is what a request renders with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from sandbox.shopify.catalog import CatalogView, Obj, iso, money_bag, page_key_id
from sandbox.shopify.model import (
    Buyer,
    Fulfillment,
    FulfillmentOrder,
    FulfillmentOrderLine,
    LineItem,
    Order,
    gid,
)
from sandbox.shopify.paging import connection

__all__ = ["View", "iso", "money_bag"]


@dataclass
class View(CatalogView):
    """Renders one store's records for one request."""

    def order(self, order: Order) -> Obj:
        """An `Order`."""
        currency = order.currency
        zero = Decimal("0.00")
        refunded = order.total if order.refunded else zero
        bag: Callable[[Decimal], Obj] = lambda amount: money_bag(amount, currency)  # noqa: E731
        return {
            "__typename": "Order",
            "id": gid("Order", order.id),
            "legacyResourceId": str(order.id),
            "name": order.name,
            "createdAt": iso(order.created_at),
            "processedAt": iso(order.created_at),
            "updatedAt": iso(order.updated_at),
            "cancelledAt": iso(order.cancelled_at),
            "cancelReason": order.cancel_reason,
            "closed": order.cancelled_at is not None,
            "closedAt": iso(order.cancelled_at),
            "confirmed": True,
            "test": False,
            "email": order.buyer.email,
            "phone": order.buyer.phone,
            "note": None,
            "tags": [],
            "sourceName": "web",
            "currencyCode": currency,
            "presentmentCurrencyCode": currency,
            "displayFinancialStatus": order.financial_status,
            "displayFulfillmentStatus": order.fulfillment_status,
            "fullyPaid": True,
            "unpaid": False,
            "requiresShipping": True,
            "canNotifyCustomer": order.buyer.email is not None,
            "taxesIncluded": False,
            "taxExempt": False,
            "statusPageUrl": f"https://{self.store.domain}/orders/{order.token}",
            "subtotalLineItemsQuantity": sum(line.quantity for line in order.lines),
            "currentSubtotalLineItemsQuantity": sum(line.current_quantity for line in order.lines),
            "totalPriceSet": bag(order.total),
            "originalTotalPriceSet": bag(order.total),
            "currentTotalPriceSet": bag(order.current_total),
            "subtotalPriceSet": bag(order.subtotal),
            "currentSubtotalPriceSet": bag(order.current_subtotal),
            "totalShippingPriceSet": bag(order.shipping_price),
            "currentShippingPriceSet": bag(order.shipping_price),
            "totalTaxSet": bag(zero),
            "currentTotalTaxSet": bag(zero),
            "totalDiscountsSet": bag(zero),
            "currentTotalDiscountsSet": bag(zero),
            "totalRefundedSet": bag(refunded),
            "totalReceivedSet": bag(order.total),
            "netPaymentSet": bag(order.total - refunded),
            "totalOutstandingSet": bag(zero),
            "shippingAddress": self.address(order.buyer, order.id),
            "billingAddress": self.address(order.buyer, order.id),
            "customer": self.customer(order.buyer),
            "lineItems": lambda a: connection(
                "LineItemConnection",
                order.lines,
                a,
                key=page_key_id,
                node=lambda line: self.line_item(order, line),
            ),
            "fulfillmentOrders": lambda a: connection(
                "FulfillmentOrderConnection",
                [
                    fo
                    for fo in order.fulfillment_orders
                    if a.get("displayable") is not True or fo.status in {"OPEN", "IN_PROGRESS"}
                ],
                a,
                key=page_key_id,
                node=self.fulfillment_order,
            ),
            "fulfillmentsCount": {
                "__typename": "Count",
                "count": len(order.fulfillments),
                "precision": "EXACT",
            },
            "fulfillments": lambda a: [
                self.fulfillment(f) for f in order.fulfillments[: a.get("first") or None]
            ],
            "refunds": lambda a: [],
        }

    def address(self, buyer: Buyer, order_id: int) -> Obj | None:
        """A `MailingAddress` for the buyer, if they gave one."""
        if not buyer.has_address:
            return None
        return {
            "__typename": "MailingAddress",
            "id": gid("MailingAddress", order_id),
            "name": buyer.name,
            "firstName": buyer.first_name,
            "lastName": buyer.last_name,
            "company": buyer.company,
            "address1": buyer.address1,
            "address2": buyer.address2,
            "city": buyer.city,
            "province": buyer.province,
            "provinceCode": buyer.province_code,
            "zip": buyer.zip,
            "country": buyer.country,
            "countryCodeV2": buyer.country_code,
            "phone": buyer.phone,
            "latitude": None,
            "longitude": None,
        }

    def customer(self, buyer: Buyer) -> Obj | None:
        """The `Customer`, for a buyer who gave an e-mail address."""
        if buyer.customer_id is None:
            return None
        return {
            "__typename": "Customer",
            "id": gid("Customer", buyer.customer_id),
            "legacyResourceId": str(buyer.customer_id),
            "firstName": buyer.first_name,
            "lastName": buyer.last_name,
            "displayName": buyer.name or buyer.email,
            "email": buyer.email,
            "phone": buyer.phone,
        }

    def line_item(self, order: Order, line: LineItem) -> Obj:
        """A `LineItem`."""
        bag: Callable[[Decimal], Obj] = lambda amount: money_bag(amount, order.currency)  # noqa: E731
        variant = self.store.variants.get(line.variant_id)
        return {
            "__typename": "LineItem",
            "id": gid("LineItem", line.id),
            "sku": line.sku,
            "name": line.title,
            "title": line.title,
            "variantTitle": variant.title if variant else None,
            "vendor": self.store.shop,
            "quantity": line.quantity,
            "currentQuantity": line.current_quantity,
            "unfulfilledQuantity": line.unfulfilled,
            "refundableQuantity": line.current_quantity,
            "nonFulfillableQuantity": line.quantity - line.current_quantity,
            "requiresShipping": True,
            "taxable": True,
            "isGiftCard": False,
            "restockable": line.current_quantity > 0,
            "originalUnitPriceSet": bag(line.price),
            "discountedUnitPriceSet": bag(line.price),
            "discountedUnitPriceAfterAllDiscountsSet": bag(line.price),
            "originalTotalSet": bag(line.price * line.quantity),
            "discountedTotalSet": lambda a: bag(line.price * line.quantity),
            "totalDiscountSet": bag(Decimal("0.00")),
            "variant": self.variant(variant) if variant else None,
        }

    def fulfillment_order(self, fulfillment_order: FulfillmentOrder) -> Obj:
        """A `FulfillmentOrder`."""
        order = self.store.orders[fulfillment_order.order_id]
        location = self.store.locations[fulfillment_order.location_id]
        return {
            "__typename": "FulfillmentOrder",
            "id": gid("FulfillmentOrder", fulfillment_order.id),
            "status": fulfillment_order.status,
            "requestStatus": "UNSUBMITTED",
            "orderId": gid("Order", order.id),
            "orderName": order.name,
            "orderProcessedAt": iso(order.created_at),
            "createdAt": iso(fulfillment_order.created_at),
            "updatedAt": iso(fulfillment_order.updated_at),
            "fulfillAt": None,
            "fulfillBy": None,
            "fulfillmentHolds": [],
            "assignedLocation": {
                "__typename": "FulfillmentOrderAssignedLocation",
                "name": location.name,
                "countryCode": location.country_code,
                "address1": None,
                "address2": None,
                "city": None,
                "province": None,
                "zip": None,
                "phone": None,
                "location": self.location(location),
            },
            "order": lambda a: self.order(order),
            "lineItems": lambda a: connection(
                "FulfillmentOrderLineItemConnection",
                fulfillment_order.lines,
                a,
                key=page_key_id,
                node=lambda fo_line: self.fulfillment_order_line(order, fo_line),
            ),
        }

    def fulfillment_order_line(self, order: Order, fo_line: FulfillmentOrderLine) -> Obj:
        """A `FulfillmentOrderLineItem`."""
        line = next(line for line in order.lines if line.id == fo_line.line_item_id)
        variant = self.store.variants.get(line.variant_id)
        return {
            "__typename": "FulfillmentOrderLineItem",
            "id": gid("FulfillmentOrderLineItem", fo_line.id),
            "totalQuantity": fo_line.total,
            "remainingQuantity": fo_line.remaining,
            "sku": line.sku,
            "productTitle": line.title,
            "variantTitle": variant.title if variant else None,
            "requiresShipping": True,
            "inventoryItemId": gid("InventoryItem", variant.inventory_item_id) if variant else None,
            "lineItem": self.line_item(order, line),
            "variant": self.variant(variant) if variant else None,
        }

    def fulfillment(self, fulfillment: Fulfillment) -> Obj:
        """A `Fulfillment`."""
        order = self.store.orders[fulfillment.order_id]
        lines_by_id = {line.id: line for line in order.lines}
        tracking = []
        if fulfillment.tracking_number or fulfillment.tracking_company:
            tracking.append(
                {
                    "__typename": "FulfillmentTrackingInfo",
                    "company": fulfillment.tracking_company,
                    "number": fulfillment.tracking_number,
                    "url": fulfillment.tracking_url,
                }
            )
        return {
            "__typename": "Fulfillment",
            "id": gid("Fulfillment", fulfillment.id),
            "legacyResourceId": str(fulfillment.id),
            "name": fulfillment.name,
            "status": "SUCCESS",
            "displayStatus": "FULFILLED",
            "createdAt": iso(fulfillment.created_at),
            "updatedAt": iso(fulfillment.created_at),
            "deliveredAt": None,
            "inTransitAt": None,
            "estimatedDeliveryAt": None,
            "requiresShipping": True,
            "totalQuantity": sum(units for _, units in fulfillment.lines),
            "trackingInfo": lambda a: tracking[: a.get("first") or None],
            "location": self.location(self.store.locations[fulfillment.location_id]),
            "order": lambda a: self.order(order),
            "fulfillmentLineItems": lambda a: connection(
                "FulfillmentLineItemConnection",
                list(enumerate(fulfillment.lines)),
                a,
                key=lambda pair: (pair[0], pair[0]),
                node=lambda pair: {
                    "__typename": "FulfillmentLineItem",
                    "id": gid("FulfillmentLineItem", fulfillment.id * 100 + pair[0]),
                    "quantity": pair[1][1],
                    "lineItem": self.line_item(order, lines_by_id[pair[1][0]]),
                },
            ),
        }
