"""The control API under `/_sandbox/` (DESIGN.md, "Sandbox marketplaces"): tests, the demo and
the benchmarks drive the account as its buyers, its seller and Amazon would.

    GET  /_sandbox/seller        seller id, marketplaces, where the APIs are, schema checking
    POST /_sandbox/listings      {"listings": [{"sku", "quantity"?, "price"?, "title"?,
                                 "product_type"?, "fulfillment_channel"?}]} seed listings: 201
    GET  /_sandbox/inventory     {"SKU": quantity, ...} as Amazon shows it; ?detail=1 adds the
                                 channel, and the patches not yet applied
    POST /_sandbox/inventory     {"SKU": N} the seller sets quantities in Seller Central
    POST /_sandbox/orders        {"lines": [{"sku", "quantity"}], "buyer"?, "marketplace_id"?,
                                 "pending"?, "shipping_price"?} a buyer checks out (stock lowered
                                 unless pending, ORDER_CHANGE sent): 201 {"order_id", "items"}
    GET  /_sandbox/orders        every order: id, status, items (no buyer data)
    POST /_sandbox/payment       {"order_id"} a Pending order's payment clears (Unshipped)
    POST /_sandbox/cancel        {"order_id", "buyer_request"?, "reason"?} cancel, or only the
                                 buyer's request to
    GET  /_sandbox/fulfillments  every confirmed package, with tracking
    POST /_sandbox/faults        replace the fault knobs (faults.py); GET shows them
    GET  /_sandbox/calls         API calls by operation; throttled (over the bucket), faulted,
                                 unauthorized, static examples served, transfers, LWA, buckets
    GET  /_sandbox/feeds         feeds and their states (no contents)
    GET  /_sandbox/reports       reports, their windows and states (no contents)
    GET  /_sandbox/notifications counts and the last notifications (?limit=N, default 1000; no
                                 bodies); POST /_sandbox/notifications/release sends held ones
    POST /_sandbox/auth          {"action": "revoke" | "restore" | "expire_access_tokens"}

No token: the sandbox listens on loopback only. Calls here are not counted as API calls. Bad
bodies get 400/422 naming the field; unknown orders and SKUs 404; refused changes 409.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.amazon.control_bodies import (
    AuthBody,
    CancelBody,
    InventoryBody,
    ListingsBody,
    OrderRefBody,
    PlaceOrderBody,
    parse_body,
)
from sandbox.amazon.errors import StoreError
from sandbox.amazon.faults import FaultSettings
from sandbox.amazon.model import V0_STATUS, Buyer, iso
from sandbox.amazon.store import KNOWN_CARRIERS

if TYPE_CHECKING:
    from sandbox.amazon.app import AmazonSandbox


def _seller(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    base = str(request.base_url).rstrip("/")
    return {
        "seller_id": sandbox.store.seller_id,
        "marketplace_ids": list(sandbox.store.marketplace_ids),
        "api_base_url": base,
        "lwa_token_url": f"{base}/auth/o2/token",
        "schema_validation": sandbox.specs is not None,
        "sqs": sandbox.notifier.sink is not None,
    }


def _listings(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    body = parse_body(raw, ListingsBody)
    store = sandbox.store
    counts = Counter(listing.sku for listing in body.listings)
    taken = sorted(sku for sku, n in counts.items() if sku in store.listings or n > 1)
    if taken:
        raise StoreError(409, f"SKUs given twice or listed already: {', '.join(taken[:20])}")
    created = {}
    for entry in body.listings:
        listing = store.add_listing(
            entry.sku,
            quantity=entry.quantity,
            price=Decimal(entry.price),
            title=entry.title,
            product_type=entry.product_type,
            fulfillment_channel=entry.fulfillment_channel,
        )
        created[listing.sku] = {"asin": listing.asin}
    return created


def _inventory(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    store = sandbox.store
    shown = store.inventory()
    if request.query_params.get("detail") in (None, "", "0", "false"):
        return shown
    return {
        "listings": {
            sku: {
                "quantity": listing.quantity,
                "fulfillment_channel": listing.fulfillment_channel,
                "product_type": listing.product_type,
                "asin": listing.asin,
            }
            for sku, listing in sorted(store.listings.items())
        },
        "pending_patches": store.pending_patches,
    }


def _set_inventory(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    wanted = parse_body(raw, InventoryBody).root
    store = sandbox.store
    unknown = sorted(sku for sku in wanted if sku not in store.listings)
    if unknown:
        raise StoreError(404, f"no listing has SKU {unknown[0]!r}")
    for sku, quantity in wanted.items():
        store.queue_quantity(sku, quantity, 0)
    return store.inventory()


def _place_order(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    body = parse_body(raw, PlaceOrderBody)
    order = sandbox.store.place_order(
        [(line.sku, line.quantity) for line in body.lines],
        body.buyer.buyer() if body.buyer else Buyer(),
        marketplace_id=body.marketplace_id,
        pending=body.pending,
        shipping_price=Decimal(body.shipping_price),
    )
    return {
        "order_id": order.order_id,
        "status": order.status,
        "items": [
            {"order_item_id": i.order_item_id, "sku": i.sku, "quantity": i.quantity}
            for i in order.items
        ],
    }


def _orders(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    return {
        "orders": [
            {
                "order_id": order.order_id,
                "status": order.status,
                "order_status": V0_STATUS[order.status],
                "fulfilled_by": order.fulfilled_by,
                "marketplace_id": order.marketplace_id,
                "created_at": iso(order.created_at),
                "updated_at": iso(order.updated_at),
                "items": [
                    {
                        "order_item_id": i.order_item_id,
                        "sku": i.sku,
                        "quantity": i.quantity,
                        "shipped": i.shipped,
                    }
                    for i in order.items
                ],
            }
            for order in sandbox.store.orders.values()
        ]
    }


def _payment(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    order = sandbox.store.order(parse_body(raw, OrderRefBody).order_id)
    sandbox.store.confirm_payment(order)
    return {"order_id": order.order_id, "status": order.status}


def _cancel(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    body = parse_body(raw, CancelBody)
    order = sandbox.store.order(body.order_id)
    if body.buyer_request:
        sandbox.store.request_cancel(order)
    else:
        sandbox.store.cancel(order, body.reason)
    return {"order_id": order.order_id, "status": order.status}


def _fulfillments(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    shown = []
    for order in sandbox.store.orders.values():
        skus = {item.order_item_id: item.sku for item in order.items}
        for package in order.packages:
            shown.append(
                {
                    "order_id": order.order_id,
                    "package_reference_id": package.package_reference_id,
                    "carrier_code": package.carrier_code,
                    "carrier_name": package.carrier_name,
                    "carrier_recognised": package.carrier_code in KNOWN_CARRIERS,
                    "shipping_method": package.shipping_method,
                    "tracking_number": package.tracking_number,
                    "ship_date": package.ship_date,
                    "items": [
                        {"order_item_id": item_id, "sku": skus[item_id], "quantity": units}
                        for item_id, units in package.items
                    ],
                    "confirmations": package.confirmations,
                    "created_at": iso(package.created_at),
                }
            )
    return {"fulfillments": shown}


def _set_faults(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    sandbox.set_faults(parse_body(raw or b"{}", FaultSettings))
    return sandbox.faults.describe()


def _get_faults(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    return sandbox.faults.describe()


def _calls(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    return {
        "calls": dict(sorted(sandbox.calls.items())),
        "throttled": dict(sorted(sandbox.throttled.items())),
        "faulted": dict(sorted(sandbox.faulted.items())),
        "unauthorized": dict(sorted(sandbox.unauthorized.items())),
        "examples_served": dict(sorted(sandbox.examples_served.items())),
        "transfers": dict(sorted(sandbox.transfers.items())),
        "lwa": dict(sorted(sandbox.issuer.counts.items())),
        "buckets": sandbox.throttle.status(),
    }


def _feeds(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    return {
        "feeds": [
            {
                "feed_id": feed.feed_id,
                "feed_type": feed.feed_type,
                "status": feed.status,
                "messages": feed.messages,
                "invalid_messages": feed.errors,
                "result_document_id": feed.result_document_id,
                "forced_outcome": feed.forced_outcome,
            }
            for feed in sandbox.feeds.feeds.values()
        ]
    }


def _reports(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    return {
        "reports": [
            {
                "report_id": report.report_id,
                "report_type": report.report_type,
                "data_start": iso(report.data_start),
                "data_end": iso(report.data_end),
                "status": report.status,
                "orders": report.orders,
                "document_id": report.document_id,
                "forced_outcome": report.forced_outcome,
            }
            for report in sandbox.reports.reports.values()
        ]
    }


def _notifications(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    text = request.query_params.get("limit", "1000")
    if not text.isdigit():
        raise StoreError(422, "limit must be a non-negative integer")
    return sandbox.notifier.describe(int(text))


def _release(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    return {"released": sandbox.notifier.release()}


def _auth(sandbox: AmazonSandbox, request: Request, raw: bytes) -> Any:
    action = parse_body(raw, AuthBody).action
    issuer = sandbox.issuer
    if action == "revoke":
        issuer.revoke()
    elif action == "restore":
        issuer.restore()
    else:
        issuer.expire()
    return {"revoked": issuer.revoked}


Handler = Callable[["AmazonSandbox", Request, bytes], Any]


def _route(path: str, handler: Handler, methods: list[str], status: int = 200) -> Route:
    async def endpoint(request: Request) -> Response:
        sandbox: AmazonSandbox = request.app.state.sandbox
        try:
            sandbox.settle()
            answer = handler(sandbox, request, await request.body())
        except StoreError as err:
            return JSONResponse({"error": err.message}, status_code=err.status)
        return JSONResponse(answer, status_code=status)

    endpoint.__name__ = f"sandbox_{handler.__name__.strip('_')}"
    return Route(f"/_sandbox{path}", endpoint, methods=methods)


def control_routes() -> list[Route]:
    """The control API's routes."""
    return [
        _route("/seller", _seller, ["GET"]),
        _route("/listings", _listings, ["POST"], 201),
        _route("/inventory", _inventory, ["GET"]),
        _route("/inventory", _set_inventory, ["POST"]),
        _route("/orders", _place_order, ["POST"], 201),
        _route("/orders", _orders, ["GET"]),
        _route("/payment", _payment, ["POST"]),
        _route("/cancel", _cancel, ["POST"]),
        _route("/fulfillments", _fulfillments, ["GET"]),
        _route("/faults", _set_faults, ["POST"]),
        _route("/faults", _get_faults, ["GET"]),
        _route("/calls", _calls, ["GET"]),
        _route("/feeds", _feeds, ["GET"]),
        _route("/reports", _reports, ["GET"]),
        _route("/notifications", _notifications, ["GET"]),
        _route("/notifications/release", _release, ["POST"]),
        _route("/auth", _auth, ["POST"]),
    ]
