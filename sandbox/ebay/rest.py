"""What eBay's REST APIs share: the error body, the bearer-token check, and the gate around a
call (`rest_call`).

Errors answer `{"errors": [{"errorId", "domain", "category", "message", "longMessage"?,
"parameters"?}]}`; `category` is REQUEST (the caller's fault), APPLICATION (eBay's) or BUSINESS.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.ebay.auth import AccessToken
from sandbox.ebay.const import (
    API_SCOPE,
    ERR_INSUFFICIENT_PERMISSIONS,
    ERR_INTERNAL,
    ERR_INVALID_TOKEN,
    ERR_TOO_MANY_REQUESTS,
)
from sandbox.ebay.gate import gated

if TYPE_CHECKING:
    from sandbox.ebay.app import EbaySandbox


class ApiError(Exception):
    """A refused REST call: the status and eBay's error fields."""

    def __init__(
        self,
        status: int,
        error_id: int,
        message: str,
        *,
        domain: str = "API_FULFILLMENT",
        category: str = "REQUEST",
        parameters: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message
        self.domain = domain
        self.category = category
        self.parameters = list(parameters)

    def entry(self) -> dict[str, Any]:
        """The error as one entry of an `errors` array."""
        shown: dict[str, Any] = {
            "errorId": self.error_id,
            "domain": self.domain,
            "category": self.category,
            "message": self.message,
        }
        if self.parameters:
            shown["parameters"] = [{"name": n, "value": v} for n, v in self.parameters]
        return shown

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        """The HTTP answer."""
        return JSONResponse({"errors": [self.entry()]}, status_code=self.status, headers=headers)


class RestStyle:
    """Refusals as the REST APIs answer them."""

    def quota_exceeded(self, operation: str) -> Response:
        """HTTP 429: the daily call limit for the resource is reached."""
        return ApiError(
            429,
            ERR_TOO_MANY_REQUESTS,
            "Too many requests. The request limit has been reached for the resource.",
            domain="ACCESS",
        ).response()

    def too_many(self, operation: str, retry_after_s: float) -> Response:
        """HTTP 429 with Retry-After."""
        return ApiError(
            429,
            ERR_TOO_MANY_REQUESTS,
            "Too many requests. The request limit has been reached for the resource.",
            domain="ACCESS",
        ).response({"Retry-After": f"{retry_after_s:g}"})

    def server_error(self, operation: str, status: int) -> Response:
        """A 5xx from eBay's side."""
        return ApiError(
            status,
            ERR_INTERNAL,
            "There was a problem with an eBay internal system or process. Contact eBay "
            "developer support for assistance.",
            domain="ACCESS",
            category="APPLICATION",
        ).response()


REST_STYLE = RestStyle()


def bearer(sandbox: EbaySandbox, request: Request, *, scope: str, app_token: bool) -> AccessToken:
    """The request's access token if valid for `scope`; ApiError 401/403 otherwise.

    Sell APIs take the seller's user token; getPublicKey takes an application token."""
    header = request.headers.get("authorization", "")
    kind, _, value = header.partition(" ")
    token = sandbox.tokens.access(value.strip()) if kind.lower() == "bearer" else None
    if token is None:
        raise ApiError(
            401,
            ERR_INVALID_TOKEN,
            "Invalid access token. Check the value of the Authorization HTTP request header.",
            domain="OAuth",
        )
    wanted_kind = "application" if app_token else "user"
    if token.kind != wanted_kind or (scope != API_SCOPE and scope not in token.scopes):
        raise ApiError(
            403,
            ERR_INSUFFICIENT_PERMISSIONS,
            "Insufficient permissions to fulfill the request.",
            domain="API_ACCESS",
        )
    return token


def json_body(raw: bytes) -> Any:
    """A JSON request body; ApiError 400 when it is not JSON."""
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, 2004, "The request body is not valid JSON.", domain="ACCESS") from err


async def rest_call(
    request: Request,
    operation: str,
    *,
    scope: str,
    apply: Callable[[EbaySandbox, Request, bytes], Response],
    app_token: bool = False,
) -> Response:
    """Authenticate, then gate and run one REST call; ApiError becomes its JSON answer."""
    sandbox: EbaySandbox = request.app.state.sandbox
    try:
        bearer(sandbox, request, scope=scope, app_token=app_token)
    except ApiError as err:
        sandbox.unauthorized[operation] += 1
        return err.response()
    raw = await request.body()

    def run() -> Response:
        try:
            return apply(sandbox, request, raw)
        except ApiError as err:
            return err.response()

    return await gated(request, sandbox, operation, REST_STYLE, run)
