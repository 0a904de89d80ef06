"""The admin ASGI app: liveness, readiness, metrics and the operator's JSON API."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync.db import Database
from sync.metrics import Metrics
from sync.status import channel_statuses, readiness_problems

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/healthz"})


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


class BearerAuthMiddleware(BaseHTTPMiddleware):
    """Everything but liveness needs `Authorization: Bearer <token>`, compared in constant time."""

    def __init__(self, app: Callable[..., Awaitable[None]], token: Callable[[], str]) -> None:
        super().__init__(app)
        self._token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.url.path in PUBLIC_PATHS:
            return await call_next(request)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        expected = self._token().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
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

    def read() -> list[dict[str, object]]:
        with ctx.db.read_session() as session:
            return [s.to_json() for s in channel_statuses(session, now)]

    channels = await run_in_threadpool(read)
    return JSONResponse(
        {
            "started_at": ctx.started_at.isoformat(),
            "uptime_s": round((now - ctx.started_at).total_seconds(), 3),
            "draining": ctx.is_draining(),
            "database": ctx.db.dialect,
            "channels": channels,
        }
    )


def create_admin_app(ctx: AdminContext) -> Starlette:
    """Build the admin app around a context."""
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/api/status", status),
        ],
        middleware=[Middleware(BearerAuthMiddleware, token=ctx.token)],
    )
    app.state.ctx = ctx
    return app
