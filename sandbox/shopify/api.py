"""`POST /admin/api/{version}/graphql.json`: the Admin GraphQL endpoint, in the order Shopify
checks things.

1. The version must look like one (`2026-04`, `unstable`): 404 otherwise.
2. `X-Shopify-Access-Token` must be the store's token (and the app installed): 401 otherwise,
   with Shopify's "[API] Invalid API key or access token" body.
3. The body must be JSON with a `query` (or `application/graphql`): 400 otherwise.
4. The document is parsed and validated: errors answer HTTP 200 with `errors` only.
5. The call is counted under its operation, then suffers its planned fault (429 with
   Retry-After, a 5xx, a THROTTLED answer, latency, a held answer).
6. Its requested cost is checked against the single-query maximum and charged to the bucket
   (THROTTLED when the bucket cannot cover it); it runs; the unused cost is refunded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import re
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.shopify.cost import requested_cost
from sandbox.shopify.executor import Executor, GraphQLRequestError, Prepared, prepare
from sandbox.shopify.faults import Fault
from sandbox.shopify.mutations import Mutations
from sandbox.shopify.queries import query_root
from sandbox.shopify.throttle import (
    MAX_QUERY_COST,
    cost_extension,
    throttled_answer,
    too_costly_answer,
)
from sandbox.shopify.views import View

if TYPE_CHECKING:
    from sandbox.shopify.app import ShopifySandbox

_VERSION = re.compile(r"^(?:\d{4}-(?:01|04|07|10)|unstable)$")
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"  # noqa: S105
BAD_BODY = {"errors": {"query": "Required parameter missing or invalid"}}


def _sandbox(request: Request) -> ShopifySandbox:
    sandbox: ShopifySandbox = request.app.state.sandbox
    return sandbox


def _read_request(raw: bytes, content_type: str) -> tuple[str, dict[str, Any], str | None] | None:
    """(query, variables, operation name) of a request body; None when it has no query."""
    if content_type.startswith("application/graphql"):
        text = raw.decode("utf-8", errors="replace")
        return (text, {}, None) if text.strip() else None
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return None
    variables = body.get("variables") or {}
    name = body.get("operationName")
    if not isinstance(variables, dict) or not isinstance(name, str | None):
        return None
    return body["query"], variables, name


async def _hold(request: Request, delay_s: float) -> None:
    """Keep the answer until the client gives up (disconnects) or `delay_s` passes."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay_s):
            while (await request.receive())["type"] != "http.disconnect":
                pass


def _answer(body: dict[str, Any], version: str, status: int = 200) -> JSONResponse:
    return JSONResponse(
        body,
        status_code=status,
        headers={"X-Shopify-API-Version": version, "X-Request-Id": str(uuid.uuid4())},
    )


def _execute(sandbox: ShopifySandbox, prepared: Prepared, version: str) -> dict[str, Any]:
    """Charge, run and refund one operation; the response body."""
    requested = requested_cost(prepared)
    if requested > MAX_QUERY_COST:
        return too_costly_answer(requested, sandbox.bucket)
    if not sandbox.bucket.take(requested):
        sandbox.throttled[prepared.operation_label] += 1
        return throttled_answer(requested, sandbox.bucket)
    view = View(
        sandbox.store,
        version,
        scopes=sandbox.options.scopes,
        utc_offset_minutes=sandbox.options.utc_offset_minutes,
    )
    executor = Executor(prepared)
    if prepared.kind == "mutation":
        root = Mutations(view, prepared, sandbox.ledger).root()
    else:
        root = query_root(view)
    body: dict[str, Any]
    try:
        body = {"data": executor.run(root)}
        actual = min(executor.actual_cost, requested)
    except GraphQLRequestError as err:
        body = {"errors": err.errors}
        actual = min(executor.actual_cost, requested)
    sandbox.bucket.refund(requested - actual)
    extensions = cost_extension(requested, actual, sandbox.bucket)
    if view.search_warnings:
        extensions["search"] = view.search_warnings
    body["extensions"] = extensions
    return body


async def graphql(request: Request) -> Response:
    """The Admin GraphQL endpoint."""
    sandbox = _sandbox(request)
    version = request.path_params["version"]
    if not _VERSION.match(version):
        return JSONResponse({"errors": "Not Found"}, status_code=404)
    token = request.headers.get("x-shopify-access-token", "")
    if not sandbox.store.installed or not hmac.compare_digest(
        token.encode(), sandbox.access_token.encode()
    ):
        return JSONResponse({"errors": INVALID_TOKEN}, status_code=401)
    parsed = _read_request(await request.body(), request.headers.get("content-type", ""))
    if parsed is None:
        return JSONResponse(BAD_BODY, status_code=400)
    try:
        prepared = prepare(sandbox.schema, *parsed)
    except GraphQLRequestError as err:
        sandbox.calls["invalid"] += 1
        return _answer({"errors": err.errors}, version)
    operation = prepared.operation_label
    sandbox.calls[operation] += 1
    faults = sandbox.faults
    fault = faults.plan(operation, sandbox.fault_rng)
    latency_ms = faults.rates_for(operation).latency_ms
    if latency_ms:
        await asyncio.sleep(latency_ms / 1000)
    settings = faults.settings
    if fault is Fault.TOO_MANY:
        sandbox.throttled[operation] += 1
        return JSONResponse(
            {"errors": "Exceeded the rate limit for this app and store. Retry after a while."},
            status_code=429,
            headers={"Retry-After": f"{settings.retry_after_s:g}"},
        )
    if fault is Fault.SERVER_ERROR:
        sandbox.faulted[operation] += 1
        return JSONResponse(
            {"errors": "Internal error, try again"}, status_code=settings.error_status
        )
    if fault is Fault.THROTTLED:
        sandbox.throttled[operation] += 1
        return _answer(throttled_answer(requested_cost(prepared), sandbox.bucket), version)
    if fault is Fault.TIMEOUT:
        sandbox.faulted[operation] += 1
        if not settings.timeout_applies:
            await _hold(request, settings.timeout_delay_s)
            return JSONResponse({"errors": "Gateway timeout"}, status_code=504)
    body = _execute(sandbox, prepared, version)
    if fault is Fault.TIMEOUT:
        await _hold(request, settings.timeout_delay_s)
    return _answer(body, version)


def api_routes() -> list[Route]:
    """The Admin API's route."""
    return [Route("/admin/api/{version}/graphql.json", graphql, methods=["POST"])]
