"""The Trading API endpoint, `POST /ws/api.dll`: XML in, XML out, the call named by
`X-EBAY-API-CALL-NAME`, in the order eBay checks things.

1. The call-name, site-id and compatibility-level headers must be there, and the body must be
   `<{CallName}Request>` XML: otherwise `Ack` Failure.
2. The seller's OAuth user token must be in `X-EBAY-API-IAF-TOKEN` (the sandbox issues no
   Auth'n'Auth tokens, so `RequesterCredentials/eBayAuthToken` is refused with 931).
3. The call is counted, charged to the Trading quota (error 518 past it) and suffers its fault.

Calls: ReviseInventoryStatus (up to 4 InventoryStatus; each applied or refused on its own, `Ack`
PartialFailure when some are refused), GetOrders, CompleteSale, GetItem, GetMyeBaySelling
(ActiveList). Refusals answer HTTP 200 with `Ack` Failure and `Errors`, as eBay does; faults
answer a 5xx carrying the same body.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.ebay.const import (
    CODE_AUTH_TOKEN_INVALID,
    CODE_BAD_REQUEST,
    CODE_INTERNAL,
    CODE_INVALID_IAF_TOKEN,
    CODE_UNSUPPORTED_CALL,
    CODE_USAGE_LIMIT,
    TRADING_BODY_MAX_BYTES,
)
from sandbox.ebay.gate import gated
from sandbox.ebay.trading_calls import CALLS, CallError
from sandbox.ebay.trading_xml import (
    TradingError,
    XmlRequestError,
    child,
    failure,
    local,
    parse,
    text,
)

if TYPE_CHECKING:
    from sandbox.ebay.app import EbaySandbox

_REQUIRED_HEADERS = ("X-EBAY-API-SITEID", "X-EBAY-API-COMPATIBILITY-LEVEL")


class TradingStyle:
    """Refusals as the Trading API answers them."""

    def __init__(self, sandbox: EbaySandbox) -> None:
        self.sandbox = sandbox

    def quota_exceeded(self, operation: str) -> Response:
        """Error 518: the application's daily Trading calls are used up."""
        return failure(
            operation,
            TradingError(
                CODE_USAGE_LIMIT,
                "Call usage limit has been reached.",
                "Your application has exceeded usage limit on this call, please make call to "
                "Developer Analytics API to check your call usage.",
            ),
            self.sandbox.clock.now(),
        )

    def too_many(self, operation: str, retry_after_s: float) -> Response:
        """Also error 518 (Trading has no HTTP 429)."""
        return self.quota_exceeded(operation)

    def server_error(self, operation: str, status: int) -> Response:
        """A 5xx with error 10007."""
        error = TradingError(
            CODE_INTERNAL,
            "Internal error to the application.",
            "Internal error to the application.",
            classification="SystemError",
        )
        return failure(operation, error, self.sandbox.clock.now(), status)


def _refuse(sandbox: EbaySandbox, call: str, code: int, short: str, long: str) -> Response:
    return failure(call or "Unknown", TradingError(code, short, long), sandbox.clock.now())


async def trading(request: Request) -> Response:
    """`POST /ws/api.dll`."""
    sandbox: EbaySandbox = request.app.state.sandbox
    call = request.headers.get("x-ebay-api-call-name", "").strip()
    if call not in CALLS:
        return _refuse(
            sandbox,
            call,
            CODE_UNSUPPORTED_CALL,
            "Unsupported API call.",
            f'The API call "{call}" is invalid or not supported in this release.',
        )
    missing = [name for name in _REQUIRED_HEADERS if not request.headers.get(name)]
    if missing:
        return _refuse(
            sandbox, call, CODE_BAD_REQUEST, "Missing header.", f"Header {missing[0]} is required."
        )
    raw = await request.body()
    if len(raw) > TRADING_BODY_MAX_BYTES:
        return _refuse(sandbox, call, CODE_BAD_REQUEST, "Request too large.", "Request too large.")
    try:
        root = parse(raw)
    except XmlRequestError as err:
        return _refuse(sandbox, call, CODE_BAD_REQUEST, "Invalid XML.", str(err))
    if local(root.tag) != f"{call}Request":
        return _refuse(
            sandbox,
            call,
            CODE_BAD_REQUEST,
            "Call name mismatch.",
            f"The body is <{local(root.tag)}>, the header names {call}.",
        )
    refused = _authenticate(sandbox, request, root, call)
    if refused is not None:
        sandbox.unauthorized[call] += 1
        return refused
    handler = CALLS[call]
    return await gated(
        request, sandbox, call, TradingStyle(sandbox), _run(sandbox, call, root, handler)
    )


def _authenticate(
    sandbox: EbaySandbox, request: Request, root: ET.Element, call: str
) -> Response | None:
    iaf = request.headers.get("x-ebay-api-iaf-token", "").strip()
    if iaf:
        token = sandbox.tokens.access(iaf.removeprefix("Bearer ").strip())
        if token is None or token.kind != "user":
            return _refuse(
                sandbox,
                call,
                CODE_INVALID_IAF_TOKEN,
                "Invalid IAF token.",
                "IAF token supplied is invalid or expired.",
            )
        return None
    credentials = child(root, "RequesterCredentials")
    supplied = text(credentials, "eBayAuthToken") if credentials is not None else None
    return _refuse(
        sandbox,
        call,
        CODE_AUTH_TOKEN_INVALID,
        "Auth token is invalid.",
        "Validation of the authentication token in API request failed."
        if supplied
        else "No X-EBAY-API-IAF-TOKEN header and no auth token in the request.",
    )


def _run(
    sandbox: EbaySandbox,
    call: str,
    root: ET.Element,
    handler: Callable[[EbaySandbox, ET.Element], Response],
) -> Callable[[], Response]:
    def run() -> Response:
        try:
            return handler(sandbox, root)
        except CallError as err:
            return failure(call, err.error, sandbox.clock.now())

    return run


def trading_routes() -> list[Route]:
    """The Trading API's route."""
    return [Route("/ws/api.dll", trading, methods=["POST"])]
