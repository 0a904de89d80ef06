"""The admin ASGI app: liveness, readiness, metrics and the operator's JSON API."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, ValidationError
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync.db import Database
from sync.http.admin_guard import BadTokenLimiter, client_key, retry_after_header
from sync.http.admin_orders import ORDER_ROUTES
from sync.http.admin_sync import SYNC_ROUTES
from sync.http.status_page import PAGE_PATHS, STATUS_PAGE_ROUTES
from sync.metrics import Metrics
from sync.models import JobState, OutboxJob
from sync.orders_view import (
    QueryError,
    QueryParams,
    channel_names,
    job_json,
    jobs_page,
    order_detail,
    orders_page,
    stock_item,
    stock_page,
)
from sync.outbox import requeue_dead
from sync.status import channel_statuses, readiness_problems
from sync.stock_ops import (
    LOCATION_MAX,
    ON_HAND_MAX,
    BundleStockError,
    StockInputError,
    UnknownSkuError,
    set_stock,
)

log = logging.getLogger(__name__)

# The status page and its assets hold no data: its data calls carry the token.
PUBLIC_PATHS = frozenset({"/healthz", *PAGE_PATHS})


@dataclass
class AdminContext:
    """What the admin routes read: the store, the metrics, and the daemon's own state."""

    db: Database
    metrics: Metrics
    token: Callable[[], str]
    enabled_channels: set[str]
    schema_problem: Callable[[], str | None]
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    is_draining: Callable[[], bool] = lambda: False
    # Called after a commit that changed the ledger (stock set, order cancelled...): wakes the
    # stock pusher so channels hear of it within a round trip.
    on_ledger_change: Callable[[], None] = lambda: None
    # Called after a commit that queued a shipment or cancel job: wakes the fan-out worker.
    on_fanout: Callable[[], None] = lambda: None
    # Scheduling (sync/http/admin_sync.py): run a channel's poll and reconcile now (KeyError for
    # a channel not served here), and this instance's id and leases for /api/status.
    sync_channel: Callable[[str], Awaitable[dict[str, dict[str, Any]]]] | None = None
    instance: Callable[[], dict[str, Any]] = dict
    # What the engine knows of a channel beyond the store (unseen shipments, a notice queue's
    # problem), merged into that channel's entry of /api/status.
    channel_notes: Callable[[], Mapping[str, Mapping[str, Any]]] = dict
    # Bad tokens counted per client address (sync/http/admin_guard.py); tests inject a clock.
    bad_tokens: BadTokenLimiter = field(default_factory=BadTokenLimiter)


class BearerAuthMiddleware(BaseHTTPMiddleware):
    """Everything but the public paths needs `Authorization: Bearer <token>`, compared in
    constant time; an address that sent too many bad tokens is answered 429 (admin_guard.py)."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        token: Callable[[], str],
        limiter: BadTokenLimiter,
        metrics: Metrics,
    ) -> None:
        super().__init__(app)
        self._token = token
        self._limiter = limiter
        self._refused = metrics.admin_auth

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.url.path in PUBLIC_PATHS:
            return await call_next(request)
        client = client_key(request.client.host if request.client else None)
        # A locked-out address is refused before its token is looked at: guessing on costs
        # nothing but 429s, and the right token does not unlock it early.
        wait = self._limiter.retry_after(client)
        if wait is not None:
            self._refused.labels("locked_out").inc()
            return JSONResponse(
                {
                    "error": "too_many_requests",
                    "detail": "too many bad admin tokens from this address; try again later",
                },
                status_code=429,
                headers={"Retry-After": retry_after_header(wait)},
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        expected = self._token().encode()
        is_valid = hmac.compare_digest(given.strip().encode(), expected)
        if scheme.lower() != "bearer" or not is_valid:
            self._refused.labels("bad_token").inc()
            if self._limiter.record_failure(client):
                self._refused.labels("lockout").inc()
            return JSONResponse(
                {"error": "unauthorized", "detail": "send Authorization: Bearer <admin token>"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="channel-sync admin"'},
            )
        return await call_next(request)


def _context(request: Request) -> AdminContext:
    ctx: AdminContext = request.app.state.ctx
    return ctx


async def healthz(request: Request) -> Response:
    """200 while the process runs."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 when the store answers, the schema is current and no enabled channel failed auth."""
    ctx = _context(request)

    def check() -> list[str]:
        problems = []
        if ctx.is_draining():
            problems.append("shutting down")
        schema = ctx.schema_problem()
        if schema:
            problems.append(schema)
        try:
            with ctx.db.read_session() as session:
                problems.extend(readiness_problems(session, ctx.enabled_channels))
        except Exception as exc:  # the store being down is exactly what readiness reports
            log.warning("readiness: store unreachable: %s", type(exc).__name__)
            problems.append(f"store unreachable: {type(exc).__name__}")
        return problems

    problems = await run_in_threadpool(check)
    if problems:
        return JSONResponse({"ready": False, "reasons": problems}, status_code=503)
    return JSONResponse({"ready": True, "reasons": []})


async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    ctx = _context(request)
    body = await run_in_threadpool(generate_latest, ctx.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def status(request: Request) -> Response:
    """Per channel: state, last successful poll, lag, last error, jobs pending and dead."""
    ctx = _context(request)
    now = datetime.now(UTC)

    notes = ctx.channel_notes()

    def read() -> list[dict[str, object]]:
        with ctx.db.read_session() as session:
            return [
                {**s.to_json(), **notes.get(s.name, {})} for s in channel_statuses(session, now)
            ]

    channels = await run_in_threadpool(read)
    return JSONResponse(
        {
            "started_at": ctx.started_at.isoformat(),
            "uptime_s": round((now - ctx.started_at).total_seconds(), 3),
            "draining": ctx.is_draining(),
            "database": ctx.db.dialect,
            "instance": ctx.instance(),
            "channels": channels,
        }
    )


def _error(status_code: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status_code)


async def _read(
    request: Request,
    allowed: tuple[str, ...],
    read: Callable[[Session, QueryParams], dict[str, Any] | None],
    missing: str = "",
) -> Response:
    """Run one read in a snapshot off the event loop; 400 for a bad parameter, 404 for None."""
    ctx = _context(request)

    def run() -> dict[str, Any] | None:
        params = QueryParams(request.query_params.multi_items(), allowed)
        with ctx.db.read_session() as session:
            return read(session, params)

    try:
        data = await run_in_threadpool(run)
    except QueryError as exc:
        return _error(400, "bad_request", str(exc))
    if data is None:
        return _error(404, "not_found", missing)
    return JSONResponse(data)


def _path_id(request: Request, name: str) -> int | None:
    raw = str(request.path_params[name])
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None


async def stock_list(request: Request) -> Response:
    """Every SKU's stock, paginated by `cursor`."""
    return await _read(request, ("limit", "cursor"), stock_page)


async def stock_one(request: Request) -> Response:
    """One SKU's on hand, reserved and available per location, and what each channel was told."""
    sku = request.path_params["sku"]
    return await _read(request, (), lambda s, _: stock_item(s, sku), f"no SKU {sku!r}")


class StockSetBody(BaseModel):
    """Body of `PUT /api/stock/{sku}`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    location: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=LOCATION_MAX)
    ]
    on_hand: Annotated[StrictInt, Field(ge=0, le=ON_HAND_MAX)]


async def stock_set(request: Request) -> Response:
    """Set a SKU's on hand at one location; wakes the pusher after the commit."""
    ctx = _context(request)
    sku = request.path_params["sku"]
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        return _error(400, "bad_request", "send the body as JSON (Content-Type: application/json)")
    try:
        payload = json.loads(await request.body())
    except json.JSONDecodeError as exc:
        return _error(400, "bad_request", f"body is not valid JSON: {exc.msg} at char {exc.pos}")
    except UnicodeDecodeError:
        return _error(400, "bad_request", "body is not UTF-8 JSON")
    except RecursionError:
        return _error(400, "bad_request", "body is not valid JSON: nested too deeply")
    try:
        body = StockSetBody.model_validate(payload)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        ]
        return _error(422, "invalid", "; ".join(problems))

    def write(session: Session) -> dict[str, Any] | None:
        set_stock(session, sku, body.location, body.on_hand)
        return stock_item(session, sku)

    try:
        item = await run_in_threadpool(ctx.db.transact, write)
    except UnknownSkuError as exc:
        return _error(404, "not_found", str(exc))
    except BundleStockError as exc:
        return _error(409, "conflict", str(exc))
    except StockInputError as exc:
        return _error(422, "invalid", str(exc))
    ctx.on_ledger_change()
    return JSONResponse(item)


async def orders_list(request: Request) -> Response:
    """Canonical orders, newest first; filters `channel`, `status`, `oversold`."""
    allowed = ("channel", "status", "oversold", "limit", "cursor")
    return await _read(request, allowed, orders_page)


async def order_one(request: Request) -> Response:
    """One order with its lines and reservations."""
    order_id = _path_id(request, "order_id")
    if order_id is None:
        return _error(400, "bad_request", "order id must be a whole number")
    return await _read(request, (), lambda s, _: order_detail(s, order_id), f"no order {order_id}")


async def jobs_list(request: Request) -> Response:
    """Outbox jobs, newest first; filters `state` and `channel`, paged by `limit`/`offset`."""
    return await _read(request, ("state", "channel", "limit", "offset"), jobs_page)


async def job_retry(request: Request) -> Response:
    """Requeue a dead job with a fresh count of tries."""
    ctx = _context(request)
    job_id = _path_id(request, "job_id")
    if job_id is None:
        return _error(400, "bad_request", "job id must be a whole number")

    def write(session: Session) -> JSONResponse:
        job = session.get(OutboxJob, job_id, with_for_update=True)
        if job is None:
            return _error(404, "not_found", f"no job {job_id}")
        if job.state != JobState.DEAD:
            detail = f"job {job_id} is {job.state.value}; only dead jobs can be retried"
            return _error(409, "conflict", detail)
        requeued = requeue_dead(session, job_id)
        if requeued is None:
            detail = f"a newer job for {job.identity_key} is already pending"
            return _error(409, "conflict", detail)
        return JSONResponse(job_json(requeued, channel_names(session)))

    answer = await run_in_threadpool(ctx.db.transact, write)
    if answer.status_code == 200:
        ctx.on_ledger_change()
    return answer


def create_admin_app(ctx: AdminContext) -> Starlette:
    """Build the admin app around a context."""
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/api/status", status),
            Route("/api/stock", stock_list),
            Route("/api/stock/{sku:path}", stock_one, methods=["GET"]),
            Route("/api/stock/{sku:path}", stock_set, methods=["PUT"]),
            Route("/api/orders", orders_list),
            Route("/api/orders/{order_id}", order_one),
            Route("/api/jobs", jobs_list),
            Route("/api/jobs/{job_id}/retry", job_retry, methods=["POST"]),
            *ORDER_ROUTES,  # sync/http/admin_orders.py: shipments and cancellations
            *SYNC_ROUTES,  # sync/http/admin_sync.py: poll and reconcile a channel now
            *STATUS_PAGE_ROUTES,  # sync/http/status_page.py: GET /, its assets, /api/latency
        ],
        middleware=[
            Middleware(
                BearerAuthMiddleware, token=ctx.token, limiter=ctx.bad_tokens, metrics=ctx.metrics
            )
        ],
    )
    app.state.ctx = ctx
    return app
