"""The control API under `/_sandbox/` (DESIGN.md, "Sandbox marketplaces"): tests, the demo and
the benchmarks drive the account as its buyers, its seller and eBay itself would.

    GET  /_sandbox/account        seller, marketplace, currency, the API addresses, current kid
    POST /_sandbox/listings       {"listings": [{"sku", "quantity", "price"?, "world"?: "trading"
                                  | "inventory", "title"?, "group"?, "out_of_stock_control"?}]}
                                  put SKUs on sale: 201 {SKU: {world, item_id, variation_id,
                                  offer_id}}
    GET  /_sandbox/listings       every listing with its ids, quantity, sold, revisions today
    POST /_sandbox/orders         {"lines": [{"sku", "quantity"}], "buyer"?: {...},
                                  "delivery_cost"?} a buyer checks out (quantities drop,
                                  ORDER_CONFIRMATION per line): 201 {"order_id", "line_items",
                                  "buyer_user_id"}
    GET  /_sandbox/inventory      {"SKU": quantity buyers can buy now, ...}
    POST /_sandbox/inventory      {"SKU": N} the seller sets quantities in Seller Hub
    POST /_sandbox/ship           {"order_id", "carrier"?, "tracking"?} the seller marks every
                                  unshipped unit shipped in Seller Hub (ITEM_MARKED_SHIPPED)
    POST /_sandbox/cancel         {"order_id"} the order is cancelled; its units go back on sale
    GET  /_sandbox/fulfillments   every package, with tracking and where it came from
    POST /_sandbox/faults         replace the fault knobs (faults.py); GET shows them
    GET  /_sandbox/calls          API calls by operation; throttled, faulted, unauthorized apart
    GET|POST /_sandbox/quotas     daily quotas, use and revisions per listing; POST {quotas?,
                                  used?, revisions_per_listing?, revisions?} changes them
    GET|POST /_sandbox/notifications  the endpoint, counts and deliveries (no bodies: they carry
                                  buyer data; ?limit=N); POST {endpoint, verification_token,
                                  topics?} sets the endpoint and runs eBay's challenge against it
    POST /_sandbox/account-deletion  {"user_id"} a buyer closes their account
                                  (MARKETPLACE_ACCOUNT_DELETION)
    POST /_sandbox/rotate-key     a new signing key (the old ones stay served): {"kid"}
    POST /_sandbox/revoke-consent the seller withdraws the application's access
    POST /_sandbox/grants         the seller consents again: 201 {"refresh_token"}

No token: the sandbox listens on loopback only. Calls here are not counted as API calls. Bad
bodies get 422 naming the field; unknown orders, SKUs and buyers 404; refused changes 409.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.ebay.control_bodies import (
    AccountDeletionBody,
    Api,
    InventoryBody,
    ListingsBody,
    NotificationsBody,
    OrderRefBody,
    PlaceOrderBody,
    QuotasBody,
    ShipBody,
    parse_body,
)
from sandbox.ebay.faults import FaultSettings
from sandbox.ebay.model import Listing, World, iso
from sandbox.ebay.notifications import TOPICS, Endpoint
from sandbox.ebay.store import BuyerDetails, NewListing, StoreError

if TYPE_CHECKING:
    from sandbox.ebay.app import EbaySandbox


def _listing_ids(listing: Listing) -> dict[str, Any]:
    return {
        "world": listing.world.value,
        "item_id": listing.item_id,
        "variation_id": listing.variation_id,
        "offer_id": listing.offer_id,
    }


def _account(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    base = sandbox.base_url(request)
    store = sandbox.store
    return {
        "seller": store.seller,
        "marketplace_id": store.marketplace_id,
        "currency": store.currency,
        "api_base_url": base,
        "trading_url": f"{base}/ws/api.dll",
        "identity_url": f"{base}/identity/v1/oauth2/token",
        "current_kid": sandbox.keys.current_kid,
    }


def _add_listings(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    body = parse_body(raw, ListingsBody)
    created = sandbox.store.add_listings(
        [
            NewListing(
                sku=entry.sku,
                quantity=entry.quantity,
                price=Decimal(entry.price),
                world=World(entry.world),
                title=entry.title,
                group=entry.group,
                out_of_stock_control=entry.out_of_stock_control,
            )
            for entry in body.listings
        ]
    )
    return {listing.sku: _listing_ids(listing) for listing in created}


def _listings(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    revisions = sandbox.limits.revisions
    return {
        sku: {
            **_listing_ids(listing),
            "title": listing.title,
            "price": f"{listing.price}",
            "quantity": listing.quantity,
            "sold": listing.sold,
            "ended": listing.ended,
            "out_of_stock_control": listing.out_of_stock_control,
            "revisions_today": revisions[listing.item_id],
        }
        for sku, listing in sorted(sandbox.store.listings.items())
    }


def _place_order(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    body = parse_body(raw, PlaceOrderBody)
    details = body.buyer.details() if body.buyer else BuyerDetails()
    order = sandbox.store.place_order(
        [(line.sku, line.quantity) for line in body.lines],
        details,
        delivery_cost=Decimal(body.delivery_cost),
    )
    return {
        "order_id": order.order_id,
        "legacy_order_id": order.legacy_order_id,
        "line_items": [{"line_item_id": ln.line_item_id, "sku": ln.sku} for ln in order.lines],
        "buyer_user_id": order.buyer.user_id,
    }


def _inventory(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    return sandbox.store.inventory()


def _set_inventory(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    wanted = parse_body(raw, InventoryBody).root
    store = sandbox.store
    listings = [(store.listing(sku), quantity) for sku, quantity in wanted.items()]
    for listing, _ in listings:
        if listing.ended:
            raise StoreError(409, f"the listing of {listing.sku!r} has ended")
    for listing, quantity in listings:
        if store.set_quantity(listing, quantity):
            sandbox.limits.count_revision(listing.item_id)  # Seller Hub edits are revisions too
    return store.inventory()


def _ship(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    body = parse_body(raw, ShipBody)
    order = sandbox.store.order(body.order_id)
    if order.cancelled_at is not None or order.fulfillment_status == "FULFILLED":
        raise StoreError(409, f"order {order.order_id} has nothing left to ship")
    fulfillment = sandbox.store.ship(
        order,
        None,
        carrier_code=body.carrier,
        tracking_number=body.tracking,
        shipped_date=None,
        source="seller_hub",
    )
    return {"fulfillment_id": fulfillment.fulfillment_id}


def _cancel(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    order = sandbox.store.order(parse_body(raw, OrderRefBody).order_id)
    sandbox.store.cancel(order)
    return {"order_id": order.order_id, "cancelled_at": iso(order.cancelled_at)}


def _fulfillments(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    store = sandbox.store
    shown = []
    for fulfillment in store.fulfillments.values():
        order = store.orders[fulfillment.order_id]
        skus = {line.line_item_id: line.sku for line in order.lines}
        shown.append(
            {
                "fulfillment_id": fulfillment.fulfillment_id,
                "order_id": order.order_id,
                "lines": [
                    {"line_item_id": line_id, "sku": skus[line_id], "quantity": quantity}
                    for line_id, quantity in fulfillment.lines
                ],
                "carrier": fulfillment.carrier_code,
                "tracking": fulfillment.tracking_number,
                "shipped_date": iso(fulfillment.shipped_date),
                "source": fulfillment.source,
                "created_at": iso(fulfillment.created_at),
            }
        )
    return {"fulfillments": shown}


def _set_faults(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    sandbox.set_faults(parse_body(raw, FaultSettings))
    return sandbox.faults.describe()


def _get_faults(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    return sandbox.faults.describe()


def _calls(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    return {
        name: dict(sorted(counter.items()))
        for name, counter in (
            ("calls", sandbox.calls),
            ("throttled", sandbox.throttled),
            ("faulted", sandbox.faulted),
            ("unauthorized", sandbox.unauthorized),
        )
    }


def _by_api(counts: Mapping[Api, int] | None) -> dict[str, int] | None:
    return None if counts is None else {str(api): n for api, n in counts.items()}


def _quotas(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    if request.method == "POST":
        body = parse_body(raw, QuotasBody)
        sandbox.limits.configure(
            quotas=_by_api(body.quotas),
            used=_by_api(body.used),
            revisions_per_listing=body.revisions_per_listing,
            revisions=body.revisions,
        )
    return sandbox.limits.describe()


def _notifications(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    text = request.query_params.get("limit", "1000")
    if not text.isdigit():
        raise StoreError(422, "limit must be a non-negative integer")
    return sandbox.notifier.describe(int(text))


async def _set_notifications(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    body = parse_body(raw, NotificationsBody)
    endpoint = Endpoint(
        body.endpoint,
        body.verification_token,
        frozenset(body.topics) if body.topics is not None else TOPICS,
    )
    await sandbox.notifier.configure(endpoint)
    if not endpoint.verified:
        raise StoreError(409, f"the endpoint failed eBay's challenge: {endpoint.last_check}")
    return sandbox.notifier.describe(0)


def _delete_account(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    buyer = sandbox.store.delete_account(parse_body(raw, AccountDeletionBody).user_id)
    return {"user_id": buyer.user_id, "deleted": True}


def _rotate_key(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    return {"kid": sandbox.keys.rotate()}


def _revoke(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    return {"revoked": sandbox.tokens.revoke()}


def _grant(sandbox: EbaySandbox, request: Request, raw: bytes) -> Any:
    return {"refresh_token": sandbox.tokens.add_grant().refresh_token}


Handler = Callable[["EbaySandbox", Request, bytes], Any | Awaitable[Any]]


def _route(path: str, handler: Handler, methods: list[str], status: int = 200) -> Route:
    async def endpoint(request: Request) -> Response:
        sandbox: EbaySandbox = request.app.state.sandbox
        try:
            answer = handler(sandbox, request, await request.body())
            if inspect.isawaitable(answer):
                answer = await answer
        except StoreError as err:
            return JSONResponse({"error": err.message}, status_code=err.status)
        return JSONResponse(answer, status_code=status)

    endpoint.__name__ = f"sandbox_{handler.__name__.strip('_')}"
    return Route(f"/_sandbox{path}", endpoint, methods=methods)


def control_routes() -> list[Route]:
    """The control API's routes."""
    return [
        _route("/account", _account, ["GET"]),
        _route("/listings", _add_listings, ["POST"], 201),
        _route("/listings", _listings, ["GET"]),
        _route("/orders", _place_order, ["POST"], 201),
        _route("/inventory", _inventory, ["GET"]),
        _route("/inventory", _set_inventory, ["POST"]),
        _route("/ship", _ship, ["POST"], 201),
        _route("/cancel", _cancel, ["POST"]),
        _route("/fulfillments", _fulfillments, ["GET"]),
        _route("/faults", _set_faults, ["POST"]),
        _route("/faults", _get_faults, ["GET"]),
        _route("/calls", _calls, ["GET"]),
        _route("/quotas", _quotas, ["GET", "POST"]),
        _route("/notifications", _notifications, ["GET"]),
        _route("/notifications", _set_notifications, ["POST"]),
        _route("/account-deletion", _delete_account, ["POST"]),
        _route("/rotate-key", _rotate_key, ["POST"]),
        _route("/revoke-consent", _revoke, ["POST"]),
        _route("/grants", _grant, ["POST"], 201),
    ]
