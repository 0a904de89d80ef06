"""The reference marketplace's API under `/{channel}/v1/`: bearer token, JSON, faults, counters.

    GET  /v1/account                          who the token belongs to (a connection check)
    GET  /v1/orders?updated_since=&limit=&cursor=   orders updated at or after a time, oldest first
    GET  /v1/orders/{id}                      one order, with its fulfilments
    POST /v1/orders/{id}/fulfillments         ship lines with tracking (Idempotency-Key honoured
                                              on channels flagged idempotent): 201, or 200 replay
    GET  /v1/orders/{id}/fulfillments         the order's fulfilments
    POST /v1/orders/{id}/cancel               cancel the order, or some of its lines
    POST /v1/stock                            set a batch of listings: one result per item
                                              (applied / conflict with the quantity / rejected)
    GET  /v1/stock?listing=&listing=          what listings hold now (unknown ones left out)
    PUT  /v1/listings/{listing}/stock         set one listing: 409 with the quantity on conflict
    GET  /v1/listings?limit=&cursor=          every listing: id, SKU, quantity

Every call is counted and logged (operation, arrival time, query string) first, then suffers its
planned fault: 401 (bad token or `auth_broken`), 429 with Retry-After (throttle, or more calls in
flight than `max_in_flight`), 503 before applying, or, after applying, a lost answer (connection
reset, or an answer after the client's timeout). Errors are `{"error": code, "message": text}`:
404 unknown order or listing, 409 conflict, 422 a refusal for good with its reason.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.reference._http import channel_of, error_response, ok, parse_body, query_int
from sandbox.reference.channel import (
    MAX_PAGE_SIZE,
    MAX_STOCK_READ,
    ApiError,
    CallRecord,
    SandboxChannel,
    StockItem,
)
from sandbox.reference.faults import Fault
from sandbox.reference.wire import (
    CancelBody,
    FulfillmentBody,
    LineUnits,
    ListingStockBody,
    StockBatchBody,
    decode_cursor,
    encode_cursor,
    parse_time,
    render_order,
    render_parcel,
    render_stock_result,
    render_time,
)

LOST_ANSWER_KEY = "sandbox.lost_answer"
"""Scope key a handler sets to (mode, delay_s) when its answer must be lost (see app.py)."""

TOKEN_KEY = "token"  # noqa: S105 - an attribute name, not a secret
"""Where the app keeps the bearer token it accepts: `app.state.token`."""

DEFAULT_PAGE_SIZE = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Act = Callable[[SandboxChannel, Request, bytes], Response]


def _is_authorized(request: Request) -> bool:
    expected: str = getattr(request.app.state, TOKEN_KEY)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), expected.encode())


def _throttled(channel: SandboxChannel, operation: str, message: str) -> Response:
    channel.market.throttled[operation] += 1
    retry_after = channel.faults.settings.retry_after_s
    return error_response(
        ApiError(429, "throttled", message), headers={"Retry-After": f"{retry_after:g}"}
    )


async def _serve(request: Request, operation: str, act: Act) -> Response:
    try:
        channel = channel_of(request)
    except ApiError as err:
        return error_response(err)
    raw = await request.body()
    market = channel.market
    market.calls[operation] += 1
    channel.call_log.append(CallRecord(operation, datetime.now(UTC), request.url.query))
    market.in_flight += 1
    market.max_in_flight_seen = max(market.max_in_flight_seen, market.in_flight)
    try:
        # Decided on arrival, before the wait: the seeded draws follow the order the calls came
        # in, and a call is over the in-flight limit if that many were out when it arrived.
        fault = channel.faults.plan(operation, market.rng)
        limit = channel.faults.settings.max_in_flight
        is_over_limit = limit is not None and market.in_flight > limit
        latency_ms = channel.faults.rates_for(operation).latency_ms
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        settings = channel.faults.settings
        if settings.auth_broken or not _is_authorized(request):
            return error_response(
                ApiError(401, "unauthorized", "missing or invalid bearer token"),
                headers={"WWW-Authenticate": "Bearer"},
            )
        if is_over_limit:
            return _throttled(channel, operation, "too many calls in flight")
        if fault is Fault.THROTTLE:
            return _throttled(channel, operation, "rate limit exceeded")
        if fault is Fault.FAIL_BEFORE:
            return error_response(ApiError(503, "unavailable", "service unavailable, try again"))
        try:
            response = act(channel, request, raw)
        except ApiError as err:
            response = error_response(err)
        if fault is Fault.FAIL_AFTER:
            request.scope[LOST_ANSWER_KEY] = (settings.lost_answer, settings.timeout_delay_s)
        return response
    finally:
        market.in_flight -= 1


def _lines(body_lines: Sequence[LineUnits] | None) -> list[tuple[str, int]] | None:
    if body_lines is None:
        return None
    return [(line.line_id, line.quantity) for line in body_lines]


# ---- handlers ----------------------------------------------------------------------------------


def _account(channel: SandboxChannel, request: Request, raw: bytes) -> Response:
    return ok({"channel": channel.name, "compare_and_swap": channel.options.compare_and_swap})


def _list_orders(channel: SandboxChannel, request: Request, raw: bytes) -> Response:
    since_text = request.query_params.get("updated_since")
    since = parse_time(since_text, "updated_since") if since_text is not None else _EPOCH
    limit = query_int(request, "limit", default=DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE)
    cursor = request.query_params.get("cursor")
    after = None
    if cursor:
        stamp, order_id = decode_cursor(cursor, 2)
        after = (parse_time(stamp, "cursor"), order_id)
    orders, last = channel.orders_after(since, after, limit)
    return ok(
        {
            "orders": [render_order(channel, order) for order in orders],
            "next_cursor": encode_cursor((render_time(last[0]), last[1])) if last else None,
        }
    )


def _get_order(channel: SandboxChannel, request: Request, raw: bytes) -> Response:
    return ok(render_order(channel, channel.order(request.path_params["order_id"])))


def _create_fulfillment(channel: SandboxChannel, request: Request, raw: bytes) -> Response:
    order_id = request.path_params["order_id"]
    channel.order(order_id)  # 404 before 422: an unknown order is not a bad body
    body = parse_body(raw, FulfillmentBody)
    parcel, is_new = channel.create_fulfillment(
        order_id,
        _lines(body.lines) or [],
        carrier=body.carrier,
        tracking_number=body.tracking_number,
        tracking_url=body.tracking_url,
        shipped_at=body.shipped_at,
        idempotency_key=request.headers.get("idempotency-key") or None,
    )
    return ok({"fulfillment": render_parcel(parcel)}, 201 if is_new else 200)


def _list_fulfillments(channel: SandboxChannel, request: Request, raw: bytes) -> Response:
    order_id = request.path_params["order_id"]
    channel.order(order_id)
    return ok({"fulfillments": [render_parcel(p) for p in channel.parcels_of(order_id)]})


def _cancel_order(channel: SandboxChannel, request: Request, raw: bytes) -> Response:
    order_id = request.path_params["order_id"]
    channel.order(order_id)
    body = parse_body(raw or b"{}", CancelBody)
    order = channel.cancel(
        order_id,
        _lines(body.lines),
        reason=body.reason,
        idempotency_key=request.headers.get("idempotency-key") or None,
    )
    return ok({"order": render_order(channel, order)})


def _set_stock(channel: SandboxChannel, request: Request, raw: bytes) -> Response:
    body = parse_body(raw, StockBatchBody)
    results = channel.set_stock(
        [StockItem(item.listing, item.quantity, item.expected) for item in body.items]
    )
    return ok({"results": [render_stock_result(r) for r in results]})


def _set_listing_stock(channel: SandboxChannel, request: Request, raw: bytes) -> Response:
    listing = request.path_params["listing"]
    body = parse_body(raw, ListingStockBody)
    quantity = channel.set_listing_stock(listing, body.quantity, body.expected)
    return ok({"listing": listing, "quantity": quantity})


def _get_stock(channel: SandboxChannel, request: Request, raw: bytes) -> Response:
    refs = request.query_params.getlist("listing")
    if not 1 <= len(refs) <= MAX_STOCK_READ:
        raise ApiError(422, "invalid", f"listing: give 1 to {MAX_STOCK_READ} listing ids")
    stock = channel.market.stock
    return ok({"stock": {ref: stock[ref] for ref in refs if ref in stock}})


def _list_listings(channel: SandboxChannel, request: Request, raw: bytes) -> Response:
    limit = query_int(request, "limit", default=DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE)
    cursor = request.query_params.get("cursor")
    after = decode_cursor(cursor, 1)[0] if cursor else None
    refs, last = channel.listings_after(after, limit)
    stock = channel.market.stock
    return ok(
        {
            "listings": [
                {"listing": ref, "sku": channel.sku_of(ref), "quantity": stock[ref]} for ref in refs
            ],
            "next_cursor": encode_cursor((last,)) if last else None,
        }
    )


def _route(path: str, operation: str, act: Act, method: str) -> Route:
    async def endpoint(request: Request) -> Response:
        return await _serve(request, operation, act)

    endpoint.__name__ = operation
    return Route(f"/{{channel}}/v1{path}", endpoint, methods=[method])


def api_routes() -> list[Route]:
    """The marketplace API's routes."""
    return [
        _route("/account", "get_account", _account, "GET"),
        _route("/orders", "list_orders", _list_orders, "GET"),
        _route("/orders/{order_id}", "get_order", _get_order, "GET"),
        _route(
            "/orders/{order_id}/fulfillments", "create_fulfillment", _create_fulfillment, "POST"
        ),
        _route("/orders/{order_id}/fulfillments", "list_fulfillments", _list_fulfillments, "GET"),
        _route("/orders/{order_id}/cancel", "cancel_order", _cancel_order, "POST"),
        _route("/stock", "set_stock", _set_stock, "POST"),
        _route("/stock", "get_stock", _get_stock, "GET"),
        _route("/listings/{listing:path}/stock", "set_listing_stock", _set_listing_stock, "PUT"),
        _route("/listings", "list_listings", _list_listings, "GET"),
    ]
