"""The Sell Fulfillment API: getOrders, getOrder, createShippingFulfillment,
getShippingFulfillments and getShippingFulfillment, under `/sell/fulfillment/v1/order`.

getOrders takes `orderIds` (up to 50, comma-separated; the filter is then ignored) or `filter`,
comma-separated criteria: `creationdate:[FROM..TO]`, `lastmodifieddate:[FROM..TO]` (either end
may be left out; both ends inclusive; if both dates are given only creationdate is used, as
eBay documents) and `orderfulfillmentstatus:{A|B}`. Without a date criterion it answers the
orders created in the last 90 days. `limit` 1-200 (default 50) and `offset` page through the
matches, newest first by creation date (unsure: eBay does not document its order), so an order
created while a caller pages shifts later pages by one: a repeat, never a loss.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.ebay.const import (
    ERR_FULFILLMENT_NOT_FOUND,
    ERR_INVALID_FILTER,
    ERR_INVALID_FULFILLMENT,
    ERR_INVALID_PARAMETER,
    ERR_ORDER_NOT_FOUND,
    FULFILLMENT_SCOPE,
    ORDER_IDS_MAX,
    ORDERS_DEFAULT_LIMIT,
    ORDERS_DEFAULT_WINDOW_DAYS,
    ORDERS_MAX_LIMIT,
)
from sandbox.ebay.model import Order
from sandbox.ebay.payloads import fulfillment_href, fulfillment_json, order_json
from sandbox.ebay.rest import ApiError, json_body, rest_call

if TYPE_CHECKING:
    from sandbox.ebay.app import EbaySandbox

_CRITERION = re.compile(r"^(?P<name>[a-z]+):(?P<value>.+)$")
_RANGE = re.compile(r"^\[(?P<start>[^\]]*?)\.\.(?P<end>[^\]]*)\]$")
_STATUSES = re.compile(r"^\{(?P<names>[A-Z_|]+)\}$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$")
_FULFILLMENT_STATES = frozenset({"NOT_STARTED", "IN_PROGRESS", "FULFILLED"})


def _bad_filter(message: str) -> ApiError:
    return ApiError(400, ERR_INVALID_FILTER, message, parameters=[("filter", message)])


def _timestamp(text: str, criterion: str) -> datetime | None:
    if text == "":
        return None
    if not _TIMESTAMP.match(text):
        raise _bad_filter(f"{criterion}: {text!r} is not an ISO 8601 UTC time (…T…Z)")
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def parse_filter(text: str) -> tuple[str | None, datetime | None, datetime | None, set[str]]:
    """(date field used, from, to, fulfilment states) of a getOrders filter."""
    ranges: dict[str, tuple[datetime | None, datetime | None]] = {}
    states: set[str] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _CRITERION.match(part)
        if match is None:
            raise _bad_filter(f"{part!r} is not NAME:VALUE")
        name, value = match["name"], match["value"]
        if name in {"creationdate", "lastmodifieddate"}:
            bounds = _RANGE.match(value)
            if bounds is None:
                raise _bad_filter(f"{name}: {value!r} is not [FROM..TO]")
            ranges[name] = (_timestamp(bounds["start"], name), _timestamp(bounds["end"], name))
        elif name == "orderfulfillmentstatus":
            names = _STATUSES.match(value)
            wanted = set(names["names"].split("|")) if names else set()
            if not wanted or not wanted <= _FULFILLMENT_STATES:
                raise _bad_filter(f"orderfulfillmentstatus: {value!r} is not {{STATE|STATE}}")
            states = wanted
        else:
            raise _bad_filter(f"unknown filter {name!r}")
    for field in ("creationdate", "lastmodifieddate"):  # creationdate wins when both are given
        if field in ranges:
            return field, *ranges[field], states
    return None, None, None, states


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ApiError(
            400,
            ERR_INVALID_PARAMETER,
            f"Invalid {name}: must be an integer from {low} to {high}.",
            parameters=[(name, text)],
        )
    return int(text)


def _matches(sandbox: EbaySandbox, request: Request) -> list[Order]:
    orders = list(sandbox.store.orders.values())
    ids_text = request.query_params.get("orderIds") or request.query_params.get("orderids")
    if ids_text is not None:
        ids = [i.strip() for i in ids_text.split(",") if i.strip()]
        if not ids or len(ids) > ORDER_IDS_MAX:
            raise ApiError(
                400, ERR_INVALID_PARAMETER, f"orderIds takes 1 to {ORDER_IDS_MAX} order ids."
            )
        found = [sandbox.store.orders[i] for i in dict.fromkeys(ids) if i in sandbox.store.orders]
        return sorted(found, key=lambda o: o.created_at, reverse=True)
    field, start, end, states = parse_filter(request.query_params.get("filter", ""))
    if field is None:
        field, start, end = "creationdate", None, None
        start = sandbox.clock.now() - timedelta(days=ORDERS_DEFAULT_WINDOW_DAYS)

    def moment(order: Order) -> datetime:
        return order.created_at if field == "creationdate" else order.modified_at

    picked = [
        order
        for order in orders
        if (start is None or moment(order) >= start)
        and (end is None or moment(order) <= end)
        and (not states or order.fulfillment_status in states)
    ]
    return sorted(picked, key=lambda o: o.created_at, reverse=True)


def _page_url(request: Request, offset: int, limit: int) -> str:
    params = dict(request.query_params) | {"limit": str(limit), "offset": str(offset)}
    return f"{str(request.url).split('?')[0]}?{urlencode(params)}"


def _get_orders(sandbox: EbaySandbox, request: Request, raw: bytes) -> Response:
    limit = _int_param(request, "limit", ORDERS_DEFAULT_LIMIT, 1, ORDERS_MAX_LIMIT)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    matches = _matches(sandbox, request)
    page = matches[offset : offset + limit]
    base = sandbox.base_url(request)
    body: dict[str, Any] = {
        "href": _page_url(request, offset, limit),
        "total": len(matches),
        "limit": limit,
        "offset": offset,
        "orders": [order_json(order, base) for order in page],
    }
    if offset + limit < len(matches):
        body["next"] = _page_url(request, offset + limit, limit)
    if offset > 0:
        body["prev"] = _page_url(request, max(offset - limit, 0), limit)
    return JSONResponse(body)


def _order_of(sandbox: EbaySandbox, request: Request) -> Order:
    order_id = request.path_params["order_id"]
    order = sandbox.store.orders.get(order_id)
    if order is None:
        raise ApiError(
            404, ERR_ORDER_NOT_FOUND, f"Invalid Order Id: {order_id}", parameters=[("orderId", "")]
        )
    return order


def _get_order(sandbox: EbaySandbox, request: Request, raw: bytes) -> Response:
    return JSONResponse(order_json(_order_of(sandbox, request), sandbox.base_url(request)))


def _invalid(message: str, field: str) -> ApiError:
    return ApiError(400, ERR_INVALID_FULFILLMENT, message, parameters=[("field", field)])


def _package_lines(order: Order, body: dict[str, Any]) -> list[tuple[str, int]]:
    lines = body.get("lineItems")
    if not isinstance(lines, list) or not lines:
        raise _invalid("lineItems must list at least one line item.", "lineItems")
    known = {line.line_item_id: line for line in order.lines}
    picked: list[tuple[str, int]] = []
    for index, entry in enumerate(lines):
        where = f"lineItems[{index}]"
        line_id = entry.get("lineItemId") if isinstance(entry, dict) else None
        quantity = entry.get("quantity") if isinstance(entry, dict) else None
        if not isinstance(line_id, str) or line_id not in known:
            raise _invalid(f"{where}.lineItemId is not a line item of this order.", where)
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            raise _invalid(f"{where}.quantity must be a positive integer.", where)
        if quantity > known[line_id].quantity:
            raise _invalid(f"{where}.quantity exceeds the quantity ordered.", where)
        picked.append((line_id, quantity))
    return picked


def _create_fulfillment(sandbox: EbaySandbox, request: Request, raw: bytes) -> Response:
    order = _order_of(sandbox, request)
    body = json_body(raw)
    if not isinstance(body, dict):
        raise _invalid("The request body must be a ShippingFulfillmentDetails object.", "body")
    lines = _package_lines(order, body)
    carrier, tracking = body.get("shippingCarrierCode"), body.get("trackingNumber")
    for name, value in (("shippingCarrierCode", carrier), ("trackingNumber", tracking)):
        if not isinstance(value, str) or not value.strip():
            raise _invalid(f"{name} is required.", name)
    assert isinstance(carrier, str) and isinstance(tracking, str)
    if not re.fullmatch(r"[A-Za-z0-9]{1,40}", tracking):
        raise _invalid("trackingNumber takes letters and digits only.", "trackingNumber")
    shipped = body.get("shippedDate")
    shipped_at = None
    if shipped is not None:
        if not isinstance(shipped, str) or not _TIMESTAMP.match(shipped):
            raise _invalid("shippedDate must be an ISO 8601 UTC time.", "shippedDate")
        shipped_at = datetime.fromisoformat(shipped.replace("Z", "+00:00"))
    if order.cancelled_at is not None:
        raise _invalid("The order is cancelled.", "orderId")
    fulfillment = sandbox.store.ship(
        order,
        lines,
        carrier_code=carrier,
        tracking_number=tracking,
        shipped_date=shipped_at,
        source="api",
    )
    location = fulfillment_href(sandbox.base_url(request), fulfillment)
    return Response(status_code=201, headers={"Location": location})


def _get_fulfillments(sandbox: EbaySandbox, request: Request, raw: bytes) -> Response:
    order = _order_of(sandbox, request)
    shown = [fulfillment_json(f) for f in order.fulfillments]
    return JSONResponse({"fulfillments": shown, "total": len(shown), "warnings": []})


def _get_fulfillment(sandbox: EbaySandbox, request: Request, raw: bytes) -> Response:
    order = _order_of(sandbox, request)
    wanted = request.path_params["fulfillment_id"]
    for fulfillment in order.fulfillments:
        if fulfillment.fulfillment_id == wanted:
            return JSONResponse(fulfillment_json(fulfillment))
    raise ApiError(404, ERR_FULFILLMENT_NOT_FOUND, f"Invalid shipping fulfillment id: {wanted}")


def _endpoint(operation: str, apply: Callable[[EbaySandbox, Request, bytes], Response]) -> Any:
    async def endpoint(request: Request) -> Response:
        return await rest_call(request, operation, scope=FULFILLMENT_SCOPE, apply=apply)

    endpoint.__name__ = operation
    return endpoint


def fulfillment_routes() -> list[Route]:
    """The Fulfillment API's routes."""
    base = "/sell/fulfillment/v1/order"
    package = f"{base}/{{order_id}}/shipping_fulfillment"
    return [
        Route(base, _endpoint("getOrders", _get_orders), methods=["GET"]),
        Route(f"{base}/{{order_id}}", _endpoint("getOrder", _get_order), methods=["GET"]),
        Route(
            package,
            _endpoint("createShippingFulfillment", _create_fulfillment),
            methods=["POST"],
        ),
        Route(package, _endpoint("getShippingFulfillments", _get_fulfillments), methods=["GET"]),
        Route(
            f"{package}/{{fulfillment_id}}",
            _endpoint("getShippingFulfillment", _get_fulfillment),
            methods=["GET"],
        ),
    ]
