"""Admin routes that change an order: record a shipment, cancel here. Mounted by `admin.py`.

Both run in one transaction (sync/fanout.py), answer the order as `GET /api/orders/{id}` shows
it, and after the commit wake the stock pusher and the fan-out worker. A refused request writes
nothing: 400 for a body that is not JSON, 422 for one that cannot be applied (naming the field),
404 for an unknown order, 409 for an order that cannot take it now.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync.fanout import (
    TEXT_MAX,
    FanoutInputError,
    OrderStateError,
    Recorded,
    Units,
    UnknownOrderError,
    cancel_here,
    record_shipment,
)
from sync.orders_view import order_detail

if TYPE_CHECKING:
    from sync.http.admin import AdminContext

_Text = Annotated[str, StringConstraints(max_length=TEXT_MAX)]


class UnitsBody(BaseModel):
    """One `{sku, quantity}` of a request's lines."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sku: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
    quantity: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]


class ShipmentBody(BaseModel):
    """Body of `POST /api/orders/{id}/shipments`; no `lines`: every open unit."""

    model_config = ConfigDict(extra="forbid", strict=True)

    carrier: _Text | None
    tracking: _Text | None
    lines: list[UnitsBody] | None = None


class CancelBody(BaseModel):
    """Body of `POST /api/orders/{id}/cancel` (optional); no `lines`: every open unit."""

    model_config = ConfigDict(extra="forbid", strict=True)

    lines: list[UnitsBody] | None = None
    reason: Annotated[str, StringConstraints(max_length=32)] = "other"


def _error(status_code: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status_code)


async def _body(request: Request, model: type[BaseModel], *, optional: bool) -> Any:
    """The validated body, or the JSONResponse that refuses it."""
    raw = await request.body()
    if optional and not raw.strip():
        return model()
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        return _error(400, "bad_request", "send the body as JSON (Content-Type: application/json)")
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError as exc:
        return _error(400, "bad_request", f"body is not valid JSON: {exc.msg} at char {exc.pos}")
    except UnicodeDecodeError:
        return _error(400, "bad_request", "body is not UTF-8 JSON")
    except RecursionError:  # `[[[...]]]` nested past the parser's stack
        return _error(400, "bad_request", "body is not valid JSON: nested too deeply")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        ]
        return _error(422, "invalid", "; ".join(problems))


async def _apply(
    request: Request, change: Callable[[Session, int], Recorded], what: str
) -> Response:
    ctx: AdminContext = request.app.state.ctx
    raw = str(request.path_params["order_id"])
    if not (raw.isascii() and raw.isdigit() and len(raw) < 19):
        return _error(400, "bad_request", "order id must be a whole number")
    order_id = int(raw)

    def write(session: Session) -> dict[str, Any]:
        recorded = change(session, order_id)
        return {what: recorded.record_id, "order": order_detail(session, order_id)}

    try:
        answer = await run_in_threadpool(ctx.db.transact, write)
    except UnknownOrderError as exc:
        return _error(404, "not_found", str(exc))
    except OrderStateError as exc:
        return _error(409, "conflict", str(exc))
    except FanoutInputError as exc:
        return _error(422, "invalid", str(exc))
    ctx.on_ledger_change()
    ctx.on_fanout()
    return JSONResponse(answer, status_code=201 if what == "shipment_id" else 200)


def _units(lines: list[UnitsBody] | None) -> list[Units]:
    return [Units(line.sku, line.quantity) for line in lines or []]


async def shipment_create(request: Request) -> Response:
    """Record a shipment of the order and queue it for the order's origin channel."""
    body = await _body(request, ShipmentBody, optional=False)
    if isinstance(body, Response):
        return body
    return await _apply(
        request,
        lambda session, order_id: record_shipment(
            session,
            order_id,
            carrier=body.carrier,
            tracking=body.tracking,
            lines=_units(body.lines),
        ),
        "shipment_id",
    )


async def order_cancel(request: Request) -> Response:
    """Cancel open units of the order here, and queue the cancel for its origin channel."""
    body = await _body(request, CancelBody, optional=True)
    if isinstance(body, Response):
        return body
    return await _apply(
        request,
        lambda session, order_id: cancel_here(
            session, order_id, lines=_units(body.lines), reason=body.reason
        ),
        "cancel_id",
    )


ORDER_ROUTES = [
    Route("/api/orders/{order_id}/shipments", shipment_create, methods=["POST"]),
    Route("/api/orders/{order_id}/cancel", order_cancel, methods=["POST"]),
]
