"""The control API under `/_sandbox/` (DESIGN.md, "Sandbox marketplaces"): tests, the demo and
the benchmarks drive the store as its buyers and its merchant would.

    GET  /_sandbox/shop          the store: domain, API base URL, currency, locations (name -> gid)
    POST /_sandbox/products      {"products": [{"sku", "price", "title"?, "stock": N | {LOCATION: N},
                                 "oversell"?}]} seed variants with stock
    POST /_sandbox/locations     {"name"} a new location
    POST /_sandbox/orders        {"lines": [{"sku", "quantity"}], "buyer": {...}, "shipping_price"?}
                                 a buyer checks out (stock committed, orders/create sent): 201
                                 {"order_id": gid, "legacy_id", "name"}
    POST /_sandbox/sell-before-next-set  {"sku", "quantity", "buyer"?} a buyer checks out just
                                 before the next inventorySetQuantities touching the SKU applies
                                 (between the caller's read and its set: compare-and-swap)
    GET  /_sandbox/inventory     {"SKU": available, ...} over every location; ?detail=1 per
                                 location with committed and on hand
    POST /_sandbox/inventory     {"SKU": N | {LOCATION: N}} the merchant sets available in the admin
    POST /_sandbox/ship          {"order_id", "tracking"?: {company, number, url}} the merchant
                                 fulfils every open unit in the admin
    POST /_sandbox/cancel        {"order_id", "restock"?, "refund"?, "reason"?} the merchant cancels
    GET  /_sandbox/fulfillments  every fulfilment, with tracking and where it came from
    POST /_sandbox/faults        replace the fault knobs (faults.py); GET shows them
    GET  /_sandbox/calls         API calls by operation; throttled (THROTTLED, 429) and faulted apart
    GET|POST /_sandbox/bucket    the cost bucket; POST {restore_rate?, maximum_available?,
                                 currently_available?} changes it
    GET  /_sandbox/webhooks      subscriptions, delivery counts and the last deliveries (?limit=N,
                                 default 1000; no bodies: they carry buyer data)
    POST /_sandbox/uninstall     the merchant uninstalls the app (app/uninstalled; API then 401)

No token: the sandbox listens on loopback only. Calls here are not counted as API calls. Bad
bodies get 422 naming the field; unknown orders and SKUs 404; refused changes 409.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.shopify.control_bodies import (
    BucketBody,
    CancelBody,
    InventoryBody,
    LocationBody,
    PlaceOrderBody,
    ProductsBody,
    RaceBody,
    ShipBody,
    TrackingBody,
    parse_body,
)
from sandbox.shopify.faults import FaultSettings
from sandbox.shopify.model import Buyer, Order, gid, parse_gid
from sandbox.shopify.store import PendingSale, StoreError
from sandbox.shopify.views import iso

if TYPE_CHECKING:
    from sandbox.shopify.app import ShopifySandbox


def _order(sandbox: ShopifySandbox, ref: str) -> Order:
    store = sandbox.store
    parsed = parse_gid(ref)
    number = parsed[1] if parsed and parsed[0] == "Order" else (int(ref) if ref.isdigit() else None)
    order = store.orders.get(number) if number is not None else None
    if order is None:
        order = next((o for o in store.orders.values() if o.name == ref), None)
    if order is None:
        raise StoreError(404, f"no order {ref}")
    return order


def _location_id(sandbox: ShopifySandbox, ref: str) -> int:
    location = sandbox.store.location_ref(ref)
    if location is None:
        raise StoreError(404, f"no location {ref!r}")
    return location.id


def _shop(sandbox: ShopifySandbox, request: Request, raw: bytes) -> Any:
    base = str(request.base_url).rstrip("/")
    store = sandbox.store
    return {
        "shop": store.shop,
        "domain": store.domain,
        "api_base_url": f"{base}/admin/api",
        "currency": store.currency,
        "locations": {loc.name: gid("Location", loc.id) for loc in store.locations.values()},
        "schema_validation": sandbox.schema is not None,
    }


def _products(sandbox: ShopifySandbox, request: Request, raw: bytes) -> Any:
    body = parse_body(raw, ProductsBody)
    store = sandbox.store
    first = min(store.locations, default=None)
    skus = [product.sku for product in body.products]
    taken = sorted({sku for sku in skus if sku in store.by_sku or skus.count(sku) > 1})
    if taken:
        raise StoreError(409, f"SKUs given twice or existing already: {', '.join(taken)}")
    plans = []
    for product in body.products:
        if isinstance(product.stock, int):
            if first is None:
                raise StoreError(409, "the store has no location to stock")
            stock = {first: product.stock}
        else:
            stock = {_location_id(sandbox, ref): units for ref, units in product.stock.items()}
        plans.append((product, stock))
    created = {}
    for product, stock in plans:
        variant = store.add_variant(
            product.sku,
            price=Decimal(product.price),
            title=product.title,
            product_title=product.product_title or product.sku,
            stock=stock,
            oversell=product.oversell,
        )
        created[variant.sku] = {
            "variant_id": gid("ProductVariant", variant.id),
            "inventory_item_id": gid("InventoryItem", variant.inventory_item_id),
        }
    return created


def _locations(sandbox: ShopifySandbox, request: Request, raw: bytes) -> Any:
    location = sandbox.store.add_location(parse_body(raw, LocationBody).name)
    return {"id": gid("Location", location.id), "name": location.name}


def _place_order(sandbox: ShopifySandbox, request: Request, raw: bytes) -> Any:
    body = parse_body(raw, PlaceOrderBody)
    buyer = body.buyer.buyer() if body.buyer else Buyer()
    order = sandbox.store.place_order(
        [(line.sku, line.quantity) for line in body.lines],
        buyer,
        shipping_price=Decimal(body.shipping_price),
    )
    return {"order_id": gid("Order", order.id), "legacy_id": order.id, "name": order.name}


def _race(sandbox: ShopifySandbox, request: Request, raw: bytes) -> Any:
    body = parse_body(raw, RaceBody)
    if body.sku not in sandbox.store.by_sku:
        raise StoreError(404, f"no variant has SKU {body.sku!r}")
    buyer = body.buyer.buyer() if body.buyer else Buyer()
    sandbox.store.pending_sales.append(PendingSale(body.sku, body.quantity, buyer))
    return {"pending": len(sandbox.store.pending_sales)}


def _inventory(sandbox: ShopifySandbox, request: Request, raw: bytes) -> Any:
    store = sandbox.store
    if request.query_params.get("detail") not in (None, "", "0", "false"):
        return {
            sku: {
                store.locations[level.location_id].name: {
                    "available": level.available,
                    "committed": level.committed,
                    "on_hand": level.on_hand,
                }
                for level in store.levels_of_item(variant.inventory_item_id)
            }
            for sku, variant in sorted(store.by_sku.items())
        }
    return store.inventory()


def _set_inventory(sandbox: ShopifySandbox, request: Request, raw: bytes) -> Any:
    body = parse_body(raw, InventoryBody).root
    store = sandbox.store
    plan: list[tuple[int, int, int]] = []
    for sku, wanted in body.items():
        variant = store.by_sku.get(sku)
        if variant is None:
            raise StoreError(404, f"no variant has SKU {sku!r}")
        item = variant.inventory_item_id
        if isinstance(wanted, int):
            levels = store.levels_of_item(item)
            location = levels[0].location_id if levels else min(store.locations)
            plan.append((item, location, wanted))
        else:
            plan.extend((item, _location_id(sandbox, ref), n) for ref, n in wanted.items())
    changes = []
    for item, location, units in plan:
        level = store.stock_level(item, location)
        changes.extend(store.set_quantity(level, "available", units))
    store.levels_changed(changes)
    return store.inventory()


def _ship(sandbox: ShopifySandbox, request: Request, raw: bytes) -> Any:
    body = parse_body(raw, ShipBody)
    order = _order(sandbox, body.order_id)
    picks = sandbox.store.remaining_picks(order)
    if order.cancelled_at is not None or not picks:
        raise StoreError(409, f"order {order.name} has nothing left to ship")
    tracking = body.tracking or TrackingBody()
    fulfillments = []
    # The admin ships each location's fulfilment order as its own fulfilment.
    for pick in picks:
        fulfillment = sandbox.store.fulfill(
            order,
            [pick],
            company=tracking.company,
            number=tracking.number,
            url=tracking.url,
            notify_customer=body.notify_customer,
            source="admin",
        )
        fulfillments.append(gid("Fulfillment", fulfillment.id))
    return {"fulfillments": fulfillments}


def _cancel(sandbox: ShopifySandbox, request: Request, raw: bytes) -> Any:
    body = parse_body(raw, CancelBody)
    order = _order(sandbox, body.order_id)
    sandbox.store.cancel(order, reason=body.reason, restock=body.restock, refund=body.refund)
    return {"order_id": gid("Order", order.id), "cancelled_at": iso(order.cancelled_at)}


def _fulfillments(sandbox: ShopifySandbox, request: Request, raw: bytes) -> Any:
    store = sandbox.store
    shown = []
    for fulfillment in store.fulfillments.values():
        order = store.orders[fulfillment.order_id]
        lines = {line.id: line for line in order.lines}
        shown.append(
            {
                "id": gid("Fulfillment", fulfillment.id),
                "order_id": gid("Order", order.id),
                "order_name": order.name,
                "name": fulfillment.name,
                "location": store.locations[fulfillment.location_id].name,
                "lines": [
                    {"sku": lines[line_id].sku, "quantity": units}
                    for line_id, units in fulfillment.lines
                ],
                "tracking": {
                    "company": fulfillment.tracking_company,
                    "number": fulfillment.tracking_number,
                    "url": fulfillment.tracking_url,
                },
                "notify_customer": fulfillment.notify_customer,
                "source": fulfillment.source,
                "created_at": iso(fulfillment.created_at),
            }
        )
    return {"fulfillments": shown}


def _set_faults(sandbox: ShopifySandbox, request: Request, raw: bytes) -> Any:
    sandbox.set_faults(parse_body(raw or b"{}", FaultSettings))
    return sandbox.faults.describe()


def _get_faults(sandbox: ShopifySandbox, request: Request, raw: bytes) -> Any:
    return sandbox.faults.describe()


def _calls(sandbox: ShopifySandbox, request: Request, raw: bytes) -> Any:
    return {
        "calls": dict(sorted(sandbox.calls.items())),
        "throttled": dict(sorted(sandbox.throttled.items())),
        "faulted": dict(sorted(sandbox.faulted.items())),
    }


def _bucket(sandbox: ShopifySandbox, request: Request, raw: bytes) -> Any:
    if request.method == "POST":
        body = parse_body(raw, BucketBody)
        sandbox.bucket.configure(
            restore_rate=body.restore_rate,
            maximum=body.maximum_available,
            available=body.currently_available,
        )
    return sandbox.bucket.status()


def _webhooks(sandbox: ShopifySandbox, request: Request, raw: bytes) -> Any:
    subscriptions = [
        {"id": gid("WebhookSubscription", s.id), "topic": s.topic, "uri": s.uri}
        for s in sandbox.store.subscriptions.values()
    ]
    text = request.query_params.get("limit", "1000")
    if not text.isdigit():
        raise StoreError(422, "limit must be a non-negative integer")
    return {"subscriptions": subscriptions, **sandbox.webhooks.describe(int(text))}


def _uninstall(sandbox: ShopifySandbox, request: Request, raw: bytes) -> Any:
    store = sandbox.store
    if store.installed:
        store.emit("app/uninstalled", None)
        store.installed = False
    return {"installed": False}


Handler = Callable[["ShopifySandbox", Request, bytes], Any]


def _route(path: str, handler: Handler, methods: list[str], status: int = 200) -> Route:
    async def endpoint(request: Request) -> Response:
        sandbox: ShopifySandbox = request.app.state.sandbox
        try:
            answer = handler(sandbox, request, await request.body())
        except StoreError as err:
            return JSONResponse({"error": err.message}, status_code=err.status)
        return JSONResponse(answer, status_code=status)

    endpoint.__name__ = f"sandbox_{handler.__name__.strip('_')}"
    return Route(f"/_sandbox{path}", endpoint, methods=methods)


def control_routes() -> list[Route]:
    """The control API's routes."""
    return [
        _route("/shop", _shop, ["GET"]),
        _route("/products", _products, ["POST"], 201),
        _route("/locations", _locations, ["POST"], 201),
        _route("/orders", _place_order, ["POST"], 201),
        _route("/sell-before-next-set", _race, ["POST"], 202),
        _route("/inventory", _inventory, ["GET"]),
        _route("/inventory", _set_inventory, ["POST"]),
        _route("/ship", _ship, ["POST"], 201),
        _route("/cancel", _cancel, ["POST"]),
        _route("/fulfillments", _fulfillments, ["GET"]),
        _route("/faults", _set_faults, ["POST"]),
        _route("/faults", _get_faults, ["GET"]),
        _route("/calls", _calls, ["GET"]),
        _route("/bucket", _bucket, ["GET", "POST"]),
        _route("/webhooks", _webhooks, ["GET"]),
        _route("/uninstall", _uninstall, ["POST"]),
    ]
