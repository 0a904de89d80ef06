"""The store's catalogue as Admin GraphQL objects (see executor.py for what an object is), and the
Admin API's wire formats; views.py adds orders and fulfilments.

Only the fields the project's connector and its tests have a use for are served; asking for any
other valid field is an error naming it. Wire formats follow the Admin API: `DateTime` in UTC
with a `Z` and whole seconds, `Decimal` amounts as Ruby prints them ("10.0", "24.99"), `Money` with
two decimals, `UnsignedInt64` as a string, ids as `gid://shopify/...`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sandbox.shopify.executor import FieldError
from sandbox.shopify.model import (
    Level,
    Location,
    Subscription,
    Variant,
    gid,
    level_gid,
    parse_gid,
)
from sandbox.shopify.paging import Search, connection
from sandbox.shopify.store import ShopStore

Obj = dict[str, Any]


def iso(when: datetime | None) -> str | None:
    """`DateTime` as the Admin API writes it: `2024-05-01T12:00:00Z`."""
    if when is None:
        return None
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def decimal_text(amount: Decimal) -> str:
    """A `Decimal` scalar as Shopify prints it: no trailing zeros, at least one decimal."""
    text = format(amount.normalize(), "f")
    return text if "." in text else f"{text}.0"


def money_text(amount: Decimal) -> str:
    """A `Money` scalar: two decimals."""
    return str(amount.quantize(Decimal("0.01")))


def money_bag(amount: Decimal, currency: str) -> Obj:
    """A `MoneyBag` in shop and presentment currency (one currency in the sandbox)."""
    money = {"__typename": "MoneyV2", "amount": decimal_text(amount), "currencyCode": currency}
    return {"__typename": "MoneyBag", "shopMoney": money, "presentmentMoney": money}


def page_key_id(record: Any) -> tuple[int, int]:
    """Connection key for records paged by id."""
    return record.id, record.id


@dataclass
class CatalogView:
    """Renders the catalogue side of one store (shop, locations, variants, inventory, webhook
    subscriptions) for one request, collecting search warnings on the way."""

    store: ShopStore
    api_version: str
    scopes: tuple[str, ...] = ()
    utc_offset_minutes: int = 0
    search_warnings: list[dict[str, Any]] = field(default_factory=list)

    def search(self, path: str, query: str | None, fields: Mapping[str, Any]) -> Search:
        """A search over `fields`, its unknown fields reported under `extensions.search`."""
        found = Search(query, fields)
        if found.warnings:
            self.search_warnings.append(
                {
                    "path": [path],
                    "query": query,
                    "warnings": [
                        {"field": name, "message": "Invalid search field for this query."}
                        for name in found.warnings
                    ],
                }
            )
        return found

    # ---- shop, locations, app -------------------------------------------------------------

    def shop(self) -> Obj:
        """The `Shop`."""
        store = self.store
        return {
            "__typename": "Shop",
            "id": gid("Shop", 1),
            "name": store.shop,
            "myshopifyDomain": store.domain,
            "email": f"owner@{store.domain}",
            "contactEmail": f"owner@{store.domain}",
            "currencyCode": store.currency,
            "enabledPresentmentCurrencies": [store.currency],
            "ianaTimezone": _iana_zone(self.utc_offset_minutes),
            "timezoneOffsetMinutes": self.utc_offset_minutes,
            "timezoneOffset": _offset_text(self.utc_offset_minutes),
            "weightUnit": "KILOGRAMS",
            "createdAt": iso(store.created_at),
            "updatedAt": iso(store.created_at),
            "url": f"https://{store.domain}",
            "primaryDomain": {
                "__typename": "Domain",
                "id": gid("Domain", 1),
                "host": store.domain,
                "url": f"https://{store.domain}",
            },
            "plan": {
                "__typename": "ShopPlan",
                "displayName": "Basic",
                "partnerDevelopment": False,
                "shopifyPlus": False,
            },
            "setupRequired": False,
        }

    def app_installation(self) -> Obj:
        """`currentAppInstallation` with the scopes the sandbox grants."""
        return {
            "__typename": "AppInstallation",
            "id": gid("AppInstallation", 1),
            "accessScopes": [
                {"__typename": "AccessScope", "handle": scope, "description": scope}
                for scope in self.scopes
            ],
        }

    def location(self, location: Location) -> Obj:
        """A `Location`."""
        return {
            "__typename": "Location",
            "id": gid("Location", location.id),
            "legacyResourceId": str(location.id),
            "name": location.name,
            "isActive": True,
            "activatable": False,
            "deactivatable": True,
            "deactivatedAt": None,
            "fulfillsOnlineOrders": True,
            "shipsInventory": True,
            "hasActiveInventory": bool(self.store.levels_at(location.id)),
            "isFulfillmentService": False,
            "createdAt": iso(location.created_at),
            "updatedAt": iso(location.created_at),
            "address": {
                "__typename": "LocationAddress",
                "address1": None,
                "address2": None,
                "city": None,
                "province": None,
                "provinceCode": None,
                "zip": None,
                "country": None,
                "countryCode": location.country_code,
                "phone": None,
                "formatted": [],
            },
            "inventoryLevel": lambda a: self._level_at(a["inventoryItemId"], location.id),
            "inventoryLevels": lambda a: connection(
                "InventoryLevelConnection",
                self.store.levels_at(location.id),
                a,
                key=lambda lv: (lv.item_id, lv.item_id),
                node=self.level,
            ),
        }

    # ---- variants and inventory -----------------------------------------------------------

    def variant(self, variant: Variant) -> Obj:
        """A `ProductVariant`."""
        levels = self.store.levels_of_item(variant.inventory_item_id)
        available = sum(level.available for level in levels)
        return {
            "__typename": "ProductVariant",
            "id": gid("ProductVariant", variant.id),
            "legacyResourceId": str(variant.id),
            "sku": variant.sku,
            "title": variant.title,
            "displayName": f"{variant.product_title} - {variant.title}",
            "price": money_text(variant.price),
            "compareAtPrice": None,
            "barcode": None,
            "position": 1,
            "inventoryQuantity": available,
            "sellableOnlineQuantity": max(available, 0),
            "availableForSale": available > 0 or variant.oversell,
            "inventoryPolicy": "CONTINUE" if variant.oversell else "DENY",
            "taxable": True,
            "createdAt": iso(variant.created_at),
            "updatedAt": iso(variant.updated_at),
            "inventoryItem": lambda a: self.item(variant.inventory_item_id),
            "product": lambda a: self.product(variant),
        }

    def product(self, variant: Variant) -> Obj:
        """The `Product` of a (single-variant) product."""
        levels = self.store.levels_of_item(variant.inventory_item_id)
        return {
            "__typename": "Product",
            "id": gid("Product", variant.product_id),
            "legacyResourceId": str(variant.product_id),
            "title": variant.product_title,
            "handle": variant.product_title.lower().replace(" ", "-"),
            "status": "ACTIVE",
            "vendor": self.store.shop,
            "productType": "",
            "tags": [],
            "tracksInventory": True,
            "totalInventory": sum(level.available for level in levels),
            "hasOnlyDefaultVariant": True,
            "createdAt": iso(variant.created_at),
            "updatedAt": iso(variant.updated_at),
        }

    def item(self, item_id: int) -> Obj | None:
        """An `InventoryItem`, or None if there is no such item."""
        variant = self.store.item_variant.get(item_id)
        if variant is None:
            return None
        return {
            "__typename": "InventoryItem",
            "id": gid("InventoryItem", item_id),
            "legacyResourceId": str(item_id),
            "sku": variant.sku,
            "tracked": True,
            "requiresShipping": True,
            "duplicateSkuCount": 0,
            "createdAt": iso(variant.created_at),
            "updatedAt": iso(variant.updated_at),
            "variant": lambda a: self.variant(variant),
            "inventoryLevel": lambda a: self._level_at(
                gid("InventoryItem", item_id), a["locationId"]
            ),
            "inventoryLevels": lambda a: connection(
                "InventoryLevelConnection",
                self.store.levels_of_item(item_id),
                a,
                key=lambda lv: (lv.location_id, lv.location_id),
                node=self.level,
            ),
        }

    def _level_at(self, item_ref: str | int, location_ref: str | int) -> Obj | None:
        item_id = _gid_number(item_ref, "InventoryItem")
        location_id = _gid_number(location_ref, "Location")
        level = self.store.levels.get((item_id, location_id))
        return self.level(level) if level is not None else None

    def level(self, level: Level) -> Obj:
        """An `InventoryLevel`."""
        level_id = level_gid(level.location_id, level.item_id)

        def quantities(args: dict[str, Any]) -> list[Obj]:
            shown = []
            for name in args["names"]:
                quantity = level.quantity(name)
                if quantity is None:
                    raise FieldError(f"Invalid quantity name: '{name}'.", "BAD_REQUEST")
                shown.append(
                    {
                        "__typename": "InventoryQuantity",
                        "id": f"gid://shopify/InventoryQuantity/{level.location_id}"
                        f"?inventory_item_id={level.item_id}&name={name}",
                        "name": name,
                        "quantity": quantity,
                        "updatedAt": iso(level.updated_at),
                    }
                )
            return shown

        return {
            "__typename": "InventoryLevel",
            "id": level_id,
            "canDeactivate": level.committed == 0,
            "deactivationAlert": None,
            "createdAt": iso(self.store.created_at),
            "updatedAt": iso(level.updated_at),
            "quantities": quantities,
            "item": lambda a: self.item(level.item_id),
            "location": lambda a: self.location(self.store.locations[level.location_id]),
        }

    # ---- webhooks -------------------------------------------------------------------------

    def subscription(self, subscription: Subscription) -> Obj:
        """A `WebhookSubscription`."""
        return {
            "__typename": "WebhookSubscription",
            "id": gid("WebhookSubscription", subscription.id),
            "legacyResourceId": str(subscription.id),
            "topic": subscription.topic,
            "uri": subscription.uri,
            "callbackUrl": subscription.uri,
            "endpoint": {"__typename": "WebhookHttpEndpoint", "callbackUrl": subscription.uri},
            "format": "JSON",
            "includeFields": list(subscription.include_fields),
            "metafieldNamespaces": [],
            "filter": subscription.filter,
            "apiVersion": {
                "__typename": "ApiVersion",
                "handle": subscription.api_version,
                "displayName": subscription.api_version,
                "supported": True,
            },
            "createdAt": iso(subscription.created_at),
            "updatedAt": iso(subscription.updated_at),
        }


def _offset_text(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{rest:02d}"


def _iana_zone(minutes: int) -> str:
    # A fixed offset has an IANA name only in whole hours, with POSIX's inverted sign.
    if minutes % 60:
        return "Etc/UTC"
    hours = -minutes // 60
    return "Etc/UTC" if hours == 0 else f"Etc/GMT{hours:+d}"


def _gid_number(ref: str | int, kind: str) -> int:
    if isinstance(ref, int):
        return ref
    parsed = parse_gid(ref)
    if parsed is None or parsed[0] != kind:
        raise FieldError(f"Invalid global id '{ref}'", "argumentLiteralsIncompatible")
    return parsed[1]
