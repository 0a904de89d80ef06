"""The control API under `/{channel}/_sandbox/`: tests, the demo and benchmarks drive the channel.

    POST /_sandbox/orders        {"lines": [{"sku", "quantity"}], "buyer": {...}, "id"?} place an
                                 order as a buyer (lowers the channel's stock): 201 {"order_id"}
    POST /_sandbox/stock         {"SKU": quantity, ...} the seller sets figures in the channel's
                                 admin (creating the listings of new SKUs)
    POST /_sandbox/ship          {"order_id", "lines"?, "carrier"?, "tracking_number"?} the seller
                                 ships in the channel's admin
    POST /_sandbox/cancel        {"order_id", "lines"?} the order is cancelled on the channel
    GET  /_sandbox/inventory     {"SKU": quantity, ...} as the channel shows it
    GET  /_sandbox/fulfillments  every fulfilment, with tracking and where it came from
    POST /_sandbox/faults        replace the fault knobs (see faults.py); GET shows them
    GET  /_sandbox/calls         API calls by operation, throttled ones apart; with `?log=1` also
                                 `"log"`: every call in arrival order (operation, server time
                                 `at`, query string), the newest CALL_LOG_MAX kept

No token: the sandbox listens on loopback only. Calls here are not counted as API calls.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import RootModel, StrictInt
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.reference._http import CHANNELS_KEY, channel_of, error_response, ok, parse_body
from sandbox.reference.channel import ApiError, SandboxChannel
from sandbox.reference.faults import FaultSettings
from sandbox.reference.wire import (
    PlaceOrderBody,
    SandboxCancelBody,
    ShipBody,
    render_order,
    render_parcel,
    render_time,
)

Handler = Callable[[SandboxChannel, bytes], Response]


class StockBody(RootModel[dict[str, StrictInt]]):
    """Body of `POST /_sandbox/stock`: SKU -> quantity."""


def _place_order(channel: SandboxChannel, raw: bytes) -> Response:
    body = parse_body(raw, PlaceOrderBody)
    order = channel.place_order(
        [(line.sku, line.quantity) for line in body.lines],
        order_id=body.id,
        buyer_ref=body.buyer.id if body.buyer else None,
        ship_to=body.buyer.ship_to() if body.buyer else None,
    )
    return ok({"order_id": order.external_id, "order": render_order(channel, order)}, 201)


def _set_stock(channel: SandboxChannel, raw: bytes) -> Response:
    body = parse_body(raw, StockBody).root
    bad = sorted(sku for sku, quantity in body.items() if quantity < 0 or not sku)
    if bad or not body:
        raise ApiError(422, "invalid", "give SKU -> quantity pairs with quantities >= 0")
    changed = channel.set_listing_quantities(body)
    return ok(
        {"listings": [{"listing": r, "sku": s, "quantity": q} for r, s, q in changed]},
    )


def _ship(channel: SandboxChannel, raw: bytes) -> Response:
    body = parse_body(raw, ShipBody)
    parcel = channel.ship_in_admin(
        body.order_id,
        [(line.line_id, line.quantity) for line in body.lines] if body.lines else None,
        carrier=body.carrier,
        tracking_number=body.tracking_number,
    )
    return ok({"fulfillment": render_parcel(parcel, source=True)}, 201)


def _cancel(channel: SandboxChannel, raw: bytes) -> Response:
    body = parse_body(raw, SandboxCancelBody)
    order = channel.cancel(
        body.order_id,
        [(line.line_id, line.quantity) for line in body.lines] if body.lines else None,
        reason="sandbox",
        idempotency_key=None,
        through_api=False,
    )
    return ok({"order": render_order(channel, order)})


def _inventory(channel: SandboxChannel, raw: bytes) -> Response:
    return ok(channel.inventory())


def _fulfillments(channel: SandboxChannel, raw: bytes) -> Response:
    return ok({"fulfillments": [render_parcel(p, source=True) for p in channel.parcels]})


def _set_faults(channel: SandboxChannel, raw: bytes) -> Response:
    channel.set_faults(parse_body(raw or b"{}", FaultSettings))
    return ok(channel.faults.describe())


def _get_faults(channel: SandboxChannel, raw: bytes) -> Response:
    return ok(channel.faults.describe())


def _calls(channel: SandboxChannel, *, with_log: bool) -> Response:
    market = channel.market
    answer: dict[str, object] = {
        "calls": dict(sorted(market.calls.items())),
        "throttled": dict(sorted(market.throttled.items())),
        "max_in_flight_seen": market.max_in_flight_seen,
    }
    if with_log:
        answer["log"] = [
            {"operation": c.operation, "at": render_time(c.at), "query": c.query}
            for c in channel.call_log
        ]
    return ok(answer)


async def _calls_endpoint(request: Request) -> Response:
    try:
        channel = channel_of(request)
        flag = request.query_params.get("log", "0")
        if flag not in ("0", "1"):
            raise ApiError(422, "invalid", "log: give 1 (with the call log) or 0")
        return _calls(channel, with_log=flag == "1")
    except ApiError as err:
        return error_response(err)


def _route(path: str, handler: Handler, method: str) -> Route:
    async def endpoint(request: Request) -> Response:
        try:
            channel = channel_of(request)
            return handler(channel, await request.body())
        except ApiError as err:
            return error_response(err)

    endpoint.__name__ = f"sandbox_{handler.__name__.strip('_')}"
    return Route(f"/{{channel}}/_sandbox{path}", endpoint, methods=[method])


async def _channels(request: Request) -> Response:
    channels: dict[str, SandboxChannel] = getattr(request.app.state, CHANNELS_KEY)
    base = str(request.base_url).rstrip("/")
    return ok(
        {
            "channels": {
                name: {
                    "base_url": f"{base}/{name}",
                    "compare_and_swap": c.options.compare_and_swap,
                    "idempotent": c.options.idempotent,
                    "allow_oversell": c.options.allow_oversell,
                    "max_stock_batch": c.options.max_stock_batch,
                }
                for name, c in channels.items()
            }
        }
    )


async def _healthz(request: Request) -> Response:
    return ok({"ok": True})


def control_routes() -> list[Route]:
    """The control API's routes, and the server's own (channel list, liveness)."""
    routes: list[tuple[str, Handler, str]] = [
        ("/orders", _place_order, "POST"),
        ("/stock", _set_stock, "POST"),
        ("/ship", _ship, "POST"),
        ("/cancel", _cancel, "POST"),
        ("/inventory", _inventory, "GET"),
        ("/fulfillments", _fulfillments, "GET"),
        ("/faults", _set_faults, "POST"),
        ("/faults", _get_faults, "GET"),
    ]
    return [
        Route("/_sandbox/channels", _channels, methods=["GET"]),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/{channel}/_sandbox/calls", _calls_endpoint, methods=["GET"]),
        *(_route(path, handler, method) for path, handler, method in routes),
    ]
