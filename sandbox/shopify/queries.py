"""The query root: which top-level queries the sandbox answers, with Shopify's search fields and
sort keys for each list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from graphql import FieldNode

from sandbox.shopify.executor import FieldError, RootResolver
from sandbox.shopify.model import Order, Variant, parse_gid
from sandbox.shopify.paging import Search, SortValue, connection
from sandbox.shopify.views import View, iso

T = TypeVar("T")

_ORDER_SORTS: dict[str, Callable[[Order], SortValue]] = {
    "ID": lambda o: o.id,
    "ORDER_NUMBER": lambda o: o.number,
    "CREATED_AT": lambda o: iso(o.created_at) or "",
    "PROCESSED_AT": lambda o: iso(o.created_at) or "",
    "UPDATED_AT": lambda o: iso(o.updated_at) or "",
}


def _order_status(order: Order) -> str:
    return "cancelled" if order.cancelled_at is not None else "open"


_ORDER_SEARCH: dict[str, Callable[[Order], Any]] = {
    "id": lambda o: o.id,
    "name": lambda o: [o.name, str(o.number)],
    "default": lambda o: [o.name, str(o.number)],
    "created_at": lambda o: o.created_at,
    "processed_at": lambda o: o.created_at,
    "updated_at": lambda o: o.updated_at,
    "status": lambda o: ["any", _order_status(o)],
    "financial_status": lambda o: o.financial_status.lower(),
    "fulfillment_status": lambda o: o.fulfillment_status.lower(),
    "sku": lambda o: [line.sku for line in o.lines],
}

_VARIANT_SEARCH: dict[str, Callable[[Variant], Any]] = {
    "id": lambda v: v.id,
    "sku": lambda v: v.sku,
    "default": lambda v: [v.sku, v.title, v.product_title],
    "title": lambda v: v.title,
    "product_id": lambda v: v.product_id,
    "inventory_item_id": lambda v: v.inventory_item_id,
    "created_at": lambda v: v.created_at,
    "updated_at": lambda v: v.updated_at,
}

_ITEM_SEARCH: dict[str, Callable[[Variant], Any]] = {
    "id": lambda v: v.inventory_item_id,
    "sku": lambda v: v.sku,
    "created_at": lambda v: v.created_at,
    "updated_at": lambda v: v.updated_at,
}


def _number(ref: Any, kind: str) -> int | None:
    """The number of a global id of `kind`; FieldError for something that is no global id,
    None for one of another kind (Shopify answers null)."""
    parsed = parse_gid(str(ref))
    if parsed is None:
        raise FieldError(f"Invalid global id '{ref}'", "argumentLiteralsIncompatible")
    return parsed[1] if parsed[0] == kind else None


def _node(view: View, ref: Any) -> dict[str, Any] | None:
    parsed = parse_gid(str(ref))
    if parsed is None:
        raise FieldError(f"Invalid global id '{ref}'", "argumentLiteralsIncompatible")
    kind, number, query = parsed
    store = view.store
    if kind == "Order" and number in store.orders:
        return view.order(store.orders[number])
    if kind == "ProductVariant" and number in store.variants:
        return view.variant(store.variants[number])
    if kind == "InventoryItem":
        return view.item(number)
    if kind == "Location" and number in store.locations:
        return view.location(store.locations[number])
    if kind == "FulfillmentOrder" and number in store.fulfillment_orders:
        return view.fulfillment_order(store.fulfillment_orders[number])
    if kind == "Fulfillment" and number in store.fulfillments:
        return view.fulfillment(store.fulfillments[number])
    if kind == "WebhookSubscription" and number in store.subscriptions:
        return view.subscription(store.subscriptions[number])
    if kind == "InventoryLevel" and query.startswith("inventory_item_id="):
        item = query.split("=", 1)[1]
        level = store.levels.get((int(item), number)) if item.isdigit() else None
        return view.level(level) if level is not None else None
    return None


def _matching(items: list[T], search: Search) -> list[T]:
    """`items` the search selects; all of them, untouched, for an empty search."""
    return [item for item in items if search.matches(item)] if search.groups else items


def query_root(view: View) -> dict[str, RootResolver]:
    """Top-level query fields -> resolvers."""
    store = view.store

    def orders(args: dict[str, Any], node: FieldNode) -> Any:
        sort_key = args.get("sortKey", "PROCESSED_AT")
        sort = _ORDER_SORTS.get(sort_key)
        if sort is None:
            raise FieldError(f"sortKey {sort_key} is not served by the sandbox", "BAD_REQUEST")
        search = view.search("orders", args.get("query"), _ORDER_SEARCH)
        chosen = sorted(
            (o for o in store.orders.values() if search.matches(o)), key=lambda o: (sort(o), o.id)
        )
        return connection(
            "OrderConnection", chosen, args, key=lambda o: (sort(o), o.id), node=view.order
        )

    def variants(args: dict[str, Any], node: FieldNode) -> Any:
        search = view.search("productVariants", args.get("query"), _VARIANT_SEARCH)
        sort_key = args.get("sortKey", "ID")
        sort: Callable[[Variant], SortValue] = (
            (lambda v: v.sku) if sort_key == "SKU" else (lambda v: v.id)
        )
        if sort_key == "SKU":
            chosen = sorted(
                (v for v in store.variants.values() if search.matches(v)),
                key=lambda v: (sort(v), v.id),
            )
        else:  # by id: sorting the ids alone is a fraction of sorting the variants by a key
            chosen = _matching([store.variants[i] for i in sorted(store.variants)], search)
        return connection(
            "ProductVariantConnection",
            chosen,
            args,
            key=lambda v: (sort(v), v.id),
            node=view.variant,
        )

    def items(args: dict[str, Any], node: FieldNode) -> Any:
        search = view.search("inventoryItems", args.get("query"), _ITEM_SEARCH)
        chosen = _matching([store.item_variant[i] for i in sorted(store.item_variant)], search)
        return connection(
            "InventoryItemConnection",
            chosen,
            args,
            key=lambda v: (v.inventory_item_id, v.inventory_item_id),
            node=lambda v: view.item(v.inventory_item_id) or {},
        )

    def locations(args: dict[str, Any], node: FieldNode) -> Any:
        search = view.search("locations", args.get("query"), {"name": lambda loc: loc.name})
        chosen = sorted(
            (loc for loc in store.locations.values() if search.matches(loc)),
            key=lambda loc: (loc.name, loc.id),
        )
        return connection(
            "LocationConnection",
            chosen,
            args,
            key=lambda loc: (loc.name, loc.id),
            node=view.location,
        )

    def location(args: dict[str, Any], node: FieldNode) -> Any:
        if args.get("id") is None:  # Shopify: the shop's primary location
            first = min(store.locations, default=None)
            return view.location(store.locations[first]) if first is not None else None
        number = _number(args["id"], "Location")
        found = store.locations.get(number) if number is not None else None
        return view.location(found) if found else None

    def subscriptions(args: dict[str, Any], node: FieldNode) -> Any:
        topics = set(args.get("topics") or ())
        uri = args.get("uri") or args.get("callbackUrl")
        chosen = [
            s
            for s in sorted(store.subscriptions.values(), key=lambda s: (iso(s.created_at), s.id))
            if (not topics or s.topic in topics) and (uri is None or s.uri == uri)
        ]
        return connection(
            "WebhookSubscriptionConnection",
            chosen,
            args,
            key=lambda s: (iso(s.created_at) or "", s.id),
            node=view.subscription,
        )

    def by_id(kind: str) -> RootResolver:
        def resolve(args: dict[str, Any], node: FieldNode) -> Any:
            _number(args["id"], kind)
            found = _node(view, args["id"])
            return found if found is not None and found["__typename"] == kind else None

        return resolve

    def inventory_level(args: dict[str, Any], node: FieldNode) -> Any:
        found = _node(view, args["id"])
        return found if found is not None and found["__typename"] == "InventoryLevel" else None

    def job(args: dict[str, Any], node: FieldNode) -> Any:
        number = _number(args["id"], "Job")
        return (
            {"__typename": "Job", "id": args["id"], "done": True, "query": None} if number else None
        )

    return {
        "shop": lambda a, n: view.shop(),
        "currentAppInstallation": lambda a, n: view.app_installation(),
        "orders": orders,
        "order": by_id("Order"),
        "productVariants": variants,
        "productVariant": by_id("ProductVariant"),
        "inventoryItems": items,
        "inventoryItem": by_id("InventoryItem"),
        "inventoryLevel": inventory_level,
        "locations": locations,
        "location": location,
        "fulfillmentOrder": by_id("FulfillmentOrder"),
        "fulfillment": by_id("Fulfillment"),
        "webhookSubscriptions": subscriptions,
        "webhookSubscription": by_id("WebhookSubscription"),
        "node": lambda a, n: _node(view, a["id"]),
        "nodes": lambda a, n: [_node(view, ref) for ref in a["ids"]],
        "job": job,
    }
