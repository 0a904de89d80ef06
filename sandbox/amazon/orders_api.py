"""The Orders API: 2026-01-01 `searchOrders` and `getOrder`, v0 `getOrders`, `getOrderItems` and
`confirmShipment` (CHANNELS.md, "Orders" and "Shipment confirmation").

searchOrders takes exactly one of `createdAfter` and `lastUpdatedAfter`; a `...Before` bound must
not precede it and must be at least two minutes in the past. Results come oldest first by the
chosen time (then order id), `maxResultsPerPage` (1-100, default 100) at a time; the
`paginationToken` carries the position and a digest of the filters, and is refused when the
filters change (only `maxResultsPerPage` and `includedData` may) or after 24 hours. Ordering by
time and id means an order updated between two pages moves behind the cursor: it is seen again,
never skipped. Orders updated less than `search_lag_s` ago are not visible yet (Amazon's order
data lags about two minutes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sandbox.amazon.api import Answer, Call, parse_time
from sandbox.amazon.errors import invalid_input, not_found
from sandbox.amazon.model import V0_STATUS, Order
from sandbox.amazon.store import PackageInput
from sandbox.amazon.views import INCLUDED_DATA, order_2026, order_items_v0, order_v0

if TYPE_CHECKING:
    from sandbox.amazon.app import AmazonSandbox

SEARCH_FILTERS = (
    "createdAfter",
    "createdBefore",
    "lastUpdatedAfter",
    "lastUpdatedBefore",
    "fulfillmentStatuses",
    "marketplaceIds",
    "fulfilledBy",
)
V0_FILTERS = (
    "CreatedAfter",
    "CreatedBefore",
    "LastUpdatedAfter",
    "LastUpdatedBefore",
    "OrderStatuses",
    "MarketplaceIds",
    "FulfillmentChannels",
    "AmazonOrderIds",
)
BEFORE_MARGIN = timedelta(minutes=2)
TOKEN_LIFETIME = timedelta(hours=24)
FULFILLMENT_STATUSES = frozenset(V0_STATUS)


def _enum(name: str, values: list[str], allowed: frozenset[str]) -> set[str]:
    wrong = [v for v in values if v not in allowed]
    if wrong:
        raise invalid_input(f"{name} value {wrong[0]!r} is not one of {', '.join(sorted(allowed))}")
    return set(values)


def _page_size(text: str | None, name: str) -> int:
    if text is None:
        return 100
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise invalid_input(f"{name} must be between 1 and 100, not {text!r}")
    return int(text)


def _token(sandbox: AmazonSandbox, cursor: list[Any], digest: str) -> str:
    expires = (sandbox.clock.now() + TOKEN_LIFETIME).timestamp()
    raw = json.dumps({"c": cursor, "f": digest, "x": expires}, separators=(",", ":")).encode()
    mac = hmac.new(sandbox.token_key, raw, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(mac + raw).decode().rstrip("=")


def _cursor(sandbox: AmazonSandbox, token: str, digest: str, name: str) -> list[Any]:
    try:
        blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        mac, raw = blob[:12], blob[12:]
        valid = hmac.compare_digest(
            mac, hmac.new(sandbox.token_key, raw, hashlib.sha256).digest()[:12]
        )
        content = json.loads(raw) if valid else None
    except (ValueError, UnicodeDecodeError):
        content = None
    if not isinstance(content, dict):
        raise invalid_input(f"{name} is not a token this API issued")
    if content["f"] != digest:
        raise invalid_input(
            f"{name} was issued for other filters: repeat the first request's values"
        )
    if content["x"] < sandbox.clock.now().timestamp():
        raise invalid_input(f"{name} has expired (tokens last 24 hours)")
    cursor: list[Any] = content["c"]
    return cursor


def _digest(call: Call, names: tuple[str, ...]) -> str:
    shown = {n: sorted(call.query.strings(n)) for n in names if call.query.has(n)}
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()[:16]


def _page(
    sandbox: AmazonSandbox,
    orders: list[Order],
    key: Callable[[Order], datetime],
    cursor: list[Any] | None,
    size: int,
) -> tuple[list[Order], list[Any] | None]:
    """One page of orders after the cursor, oldest first; the next cursor when more follow."""

    def sort_key(order: Order) -> tuple[float, str]:
        return key(order).timestamp(), order.order_id

    ordered = sorted(orders, key=sort_key)
    if cursor is not None:
        after = (float(cursor[0]), str(cursor[1]))
        ordered = [o for o in ordered if sort_key(o) > after]
    page = ordered[:size]
    if len(ordered) > size:
        last = sort_key(page[-1])
        return page, [last[0], last[1]]
    return page, None


def _window(
    sandbox: AmazonSandbox, call: Call, names: tuple[str, str, str, str]
) -> tuple[str, datetime, datetime | None]:
    """(which time, after, before) from exactly one of created/updated after."""
    created_after, created_before, updated_after, updated_before = names
    has_created, has_updated = call.query.has(created_after), call.query.has(updated_after)
    if has_created == has_updated:
        raise invalid_input(f"exactly one of {created_after} and {updated_after} must be given")
    prefix, other = (
        ((created_after, created_before), (updated_before,))
        if has_created
        else ((updated_after, updated_before), (created_before,))
    )
    for name in other:
        if call.query.has(name):
            raise invalid_input(f"{name} cannot be combined with {prefix[0]}")
    after = parse_time(prefix[0], call.query.one(prefix[0]) or "")
    before_text = call.query.one(prefix[1])
    before = parse_time(prefix[1], before_text) if before_text is not None else None
    if before is not None:
        if before < after:
            raise invalid_input(f"{prefix[1]} must be equal to or after {prefix[0]}")
        if before > sandbox.clock.now() - BEFORE_MARGIN:
            raise invalid_input(f"{prefix[1]} must be at least two minutes before the request")
    return ("created" if has_created else "updated"), after, before


def _visible(sandbox: AmazonSandbox) -> list[Order]:
    lag = sandbox.faults.settings.search_lag_s
    cutoff = sandbox.clock.now() - timedelta(seconds=lag)
    return [o for o in sandbox.store.orders.values() if not lag or o.updated_at <= cutoff]


def _marketplaces(sandbox: AmazonSandbox, given: list[str], name: str) -> set[str]:
    unknown = [m for m in given if m not in sandbox.store.marketplace_ids]
    if unknown:
        raise invalid_input(f"{name}: {unknown[0]} is not a marketplace this seller sells on")
    return set(given)


def search_orders(sandbox: AmazonSandbox, call: Call) -> Answer:
    """GET /orders/2026-01-01/orders."""
    q = call.query
    which, after, before = _window(
        sandbox, call, ("createdAfter", "createdBefore", "lastUpdatedAfter", "lastUpdatedBefore")
    )
    size = _page_size(q.one("maxResultsPerPage"), "maxResultsPerPage")
    statuses = _enum("fulfillmentStatuses", q.strings("fulfillmentStatuses"), FULFILLMENT_STATUSES)
    by = _enum("fulfilledBy", q.strings("fulfilledBy"), frozenset({"MERCHANT", "AMAZON"}))
    markets = _marketplaces(sandbox, q.strings("marketplaceIds"), "marketplaceIds")
    included = frozenset(_enum("includedData", q.strings("includedData"), INCLUDED_DATA))
    digest = _digest(call, SEARCH_FILTERS)
    token = q.one("paginationToken")
    cursor = _cursor(sandbox, token, digest, "paginationToken") if token else None

    def key(order: Order) -> datetime:
        return order.created_at if which == "created" else order.updated_at

    chosen = [
        o
        for o in _visible(sandbox)
        if key(o) >= after
        and (before is None or key(o) <= before)
        and (not statuses or o.status in statuses)
        and (not by or o.fulfilled_by in by)
        and (not markets or o.marketplace_id in markets)
    ]
    page, following = _page(sandbox, chosen, key, cursor, size)
    body: dict[str, Any] = {"orders": [order_2026(o, included) for o in page]}
    if following is not None:
        body["pagination"] = {"nextToken": _token(sandbox, following, digest)}
    if before is not None:
        body["createdBefore" if which == "created" else "lastUpdatedBefore"] = q.one(
            "createdBefore" if which == "created" else "lastUpdatedBefore"
        )
    return Answer(200, body)


def _order(sandbox: AmazonSandbox, order_id: str) -> Order:
    order = sandbox.store.orders.get(order_id)
    if order is None:
        raise not_found(f"No order found for orderId {order_id}")
    return order


def get_order(sandbox: AmazonSandbox, call: Call) -> Answer:
    """GET /orders/2026-01-01/orders/{orderId}."""
    included = frozenset(_enum("includedData", call.query.strings("includedData"), INCLUDED_DATA))
    order = _order(sandbox, call.path["orderId"])
    return Answer(200, {"order": order_2026(order, included)})


def get_orders_v0(sandbox: AmazonSandbox, call: Call) -> Answer:
    """GET /orders/v0/orders (deprecated; kept for what 2026-01-01 has no equivalent of)."""
    q = call.query
    markets = _marketplaces(sandbox, q.strings("MarketplaceIds"), "MarketplaceIds")
    if not markets:
        raise invalid_input("MarketplaceIds is required")
    ids = set(q.strings("AmazonOrderIds"))
    size = _page_size(q.one("MaxResultsPerPage"), "MaxResultsPerPage")
    if ids and not any(q.has(n) for n in ("CreatedAfter", "LastUpdatedAfter")):
        which, after, before = (
            "created",
            datetime.min.replace(tzinfo=sandbox.clock.now().tzinfo),
            None,
        )
    else:
        which, after, before = _window(
            sandbox,
            call,
            ("CreatedAfter", "CreatedBefore", "LastUpdatedAfter", "LastUpdatedBefore"),
        )
    statuses = _enum("OrderStatuses", q.strings("OrderStatuses"), frozenset(V0_STATUS.values()))
    channels = _enum(
        "FulfillmentChannels", q.strings("FulfillmentChannels"), frozenset({"MFN", "AFN"})
    )
    digest = _digest(call, V0_FILTERS)
    token = q.one("NextToken")
    cursor = _cursor(sandbox, token, digest, "NextToken") if token else None

    def key(order: Order) -> datetime:
        return order.created_at if which == "created" else order.updated_at

    chosen = [
        o
        for o in _visible(sandbox)
        if key(o) >= after
        and (before is None or key(o) <= before)
        and o.marketplace_id in markets
        and (not ids or o.order_id in ids)
        and (not statuses or V0_STATUS[o.status] in statuses)
        and (not channels or o.fulfillment_type in channels)
    ]
    page, following = _page(sandbox, chosen, key, cursor, size)
    payload: dict[str, Any] = {"Orders": [order_v0(o) for o in page]}
    if following is not None:
        payload["NextToken"] = _token(sandbox, following, digest)
    if before is not None:
        payload["CreatedBefore" if which == "created" else "LastUpdatedBefore"] = before.isoformat()
    return Answer(200, {"payload": payload})


def get_order_items_v0(sandbox: AmazonSandbox, call: Call) -> Answer:
    """GET /orders/v0/orders/{orderId}/orderItems (every item on one page)."""
    order = _order(sandbox, call.path["orderId"])
    return Answer(
        200, {"payload": {"AmazonOrderId": order.order_id, "OrderItems": order_items_v0(order)}}
    )


def _package(body: Any) -> tuple[str, PackageInput]:
    """(marketplaceId, package) of a confirmShipment body; 400 naming a missing field."""
    if not isinstance(body, dict):
        raise invalid_input("the body must be a JSON object")
    detail = body.get("packageDetail")
    marketplace = body.get("marketplaceId")
    if not isinstance(marketplace, str) or not isinstance(detail, dict):
        raise invalid_input("marketplaceId and packageDetail are required")
    for name in ("packageReferenceId", "carrierCode", "trackingNumber", "shipDate"):
        if not isinstance(detail.get(name), str) or not detail[name]:
            raise invalid_input(f"packageDetail.{name} is required")
    items = detail.get("orderItems")
    if not isinstance(items, list) or not items:
        raise invalid_input("packageDetail.orderItems must list at least one item")
    lines = []
    for entry in items:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("orderItemId"), str)
            and type(entry.get("quantity")) is int
        ):
            raise invalid_input(
                "each orderItems entry needs an orderItemId and an integer quantity"
            )
        lines.append((entry["orderItemId"], entry["quantity"]))
    carrier = detail.get("carrierName")
    method = detail.get("shippingMethod")
    return marketplace, PackageInput(
        package_reference_id=detail["packageReferenceId"],
        carrier_code=detail["carrierCode"],
        carrier_name=carrier if isinstance(carrier, str) and carrier else None,
        shipping_method=method if isinstance(method, str) and method else None,
        tracking_number=detail["trackingNumber"],
        ship_date=detail["shipDate"],
        items=lines,
    )


def confirm_shipment(sandbox: AmazonSandbox, call: Call) -> Answer:
    """POST /orders/v0/orders/{orderId}/shipmentConfirmation: 204, nothing in the body."""
    order = _order(sandbox, call.path["orderId"])
    marketplace, package = _package(call.body)
    sandbox.store.confirm_shipment(order, marketplace, package, apply=call.apply)
    return Answer(204)
