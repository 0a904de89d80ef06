"""Application-token APIs: the Notification API's getPublicKey (the key that verifies a
notification, by kid) and the Developer Analytics API's getRateLimits (today's use of each API's
daily quota). Both take an application token (client-credentials grant), not the seller's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.ebay.const import API_SCOPE, ERR_PUBLIC_KEY_NOT_FOUND
from sandbox.ebay.model import iso
from sandbox.ebay.rest import ApiError, rest_call

if TYPE_CHECKING:
    from sandbox.ebay.app import EbaySandbox

_RATE_LIMIT_NAMES = {
    "fulfillment": ("sell", "Fulfillment", "sell.fulfillment"),
    "inventory": ("sell", "Inventory", "sell.inventory"),
    "notification": ("commerce", "Notification", "commerce.notification"),
    "trading": ("TradingAPI", "TradingAPI", "TradingAPI"),
}
"""Our API names -> (apiContext, apiName, resource name) as getRateLimits shows them."""


def _public_key(sandbox: EbaySandbox, request: Request, raw: bytes) -> Response:
    kid = request.path_params["public_key_id"]
    answer = sandbox.keys.public_key(kid)
    if answer is None:
        raise ApiError(
            404,
            ERR_PUBLIC_KEY_NOT_FOUND,
            "The public key id is invalid.",
            domain="API_NOTIFICATION",
            parameters=[("public_key_id", kid)],
        )
    return JSONResponse(answer)


def _rate_limits(sandbox: EbaySandbox, request: Request, raw: bytes) -> Response:
    limits = sandbox.limits
    wanted_context = request.query_params.get("api_context")
    wanted_name = (request.query_params.get("api_name") or "").lower()
    reset = iso(limits.reset_at())
    shown: list[dict[str, Any]] = []
    for api, (context, name, resource) in _RATE_LIMIT_NAMES.items():
        if wanted_context and wanted_context.lower() != context.lower():
            continue
        if wanted_name and wanted_name not in {name.lower(), api}:
            continue
        limit = limits.quotas.get(api, 0)
        used = limits.used[api]
        shown.append(
            {
                "apiContext": context,
                "apiName": name,
                "apiVersion": "v1",
                "resources": [
                    {
                        "name": resource,
                        "rates": [
                            {
                                "count": used,
                                "limit": limit,
                                "remaining": max(limit - used, 0),
                                "reset": reset,
                                "timeWindow": 86400,
                            }
                        ],
                    }
                ],
            }
        )
    return JSONResponse({"rateLimits": shown})


async def get_public_key(request: Request) -> Response:
    """`GET /commerce/notification/v1/public_key/{public_key_id}`."""
    return await rest_call(
        request, "getPublicKey", scope=API_SCOPE, apply=_public_key, app_token=True
    )


async def get_rate_limits(request: Request) -> Response:
    """`GET /developer/analytics/v1_beta/rate_limit/`."""
    return await rest_call(
        request, "getRateLimits", scope=API_SCOPE, apply=_rate_limits, app_token=True
    )


def commerce_routes() -> list[Route]:
    """The application-token routes."""
    return [
        Route(
            "/commerce/notification/v1/public_key/{public_key_id}",
            get_public_key,
            methods=["GET"],
        ),
        Route("/developer/analytics/v1_beta/rate_limit/", get_rate_limits, methods=["GET"]),
        Route("/developer/analytics/v1_beta/rate_limit", get_rate_limits, methods=["GET"]),
    ]
