"""What every API call goes through once authenticated, in the order eBay applies it: counted
under its operation, charged to its API's daily quota (refused past it), then its planned fault
(throttled, a 5xx, latency, an answer held past the client's timeout, by default after the call
was applied). How a refusal looks depends on the API: `ErrorStyle`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from starlette.requests import Request
from starlette.responses import Response

from sandbox.ebay.faults import Fault
from sandbox.ebay.quotas import OPERATION_APIS

if TYPE_CHECKING:
    from sandbox.ebay.app import EbaySandbox


class ErrorStyle(Protocol):
    """How one API says it refused a call."""

    def quota_exceeded(self, operation: str) -> Response:
        """The API's daily quota is used up."""
        ...

    def too_many(self, operation: str, retry_after_s: float) -> Response:
        """A short-term rate limit."""
        ...

    def server_error(self, operation: str, status: int) -> Response:
        """eBay failed (nothing applied)."""
        ...


async def hold(request: Request, delay_s: float) -> None:
    """Keep the answer until the client gives up (disconnects) or `delay_s` passes."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay_s):
            while (await request.receive())["type"] != "http.disconnect":
                pass


async def gated(
    request: Request,
    sandbox: EbaySandbox,
    operation: str,
    style: ErrorStyle,
    apply: Callable[[], Response],
) -> Response:
    """Count, charge, suffer the planned fault, and run `apply` (which changes state)."""
    sandbox.calls[operation] += 1
    api = OPERATION_APIS.get(operation)
    if api is not None and not sandbox.limits.take_call(api):
        sandbox.throttled[operation] += 1
        return style.quota_exceeded(operation)
    faults = sandbox.faults
    fault = faults.plan(operation, sandbox.fault_rng)
    latency_ms = faults.rates_for(operation).latency_ms
    if latency_ms:
        await asyncio.sleep(latency_ms / 1000)
    settings = faults.settings
    if fault is Fault.TOO_MANY:
        sandbox.throttled[operation] += 1
        return style.too_many(operation, settings.retry_after_s)
    if fault is Fault.SERVER_ERROR:
        sandbox.faulted[operation] += 1
        return style.server_error(operation, settings.error_status)
    if fault is Fault.TIMEOUT:
        sandbox.faulted[operation] += 1
        if not settings.timeout_applies:
            await hold(request, settings.timeout_delay_s)
            return style.server_error(operation, 504)
    response = apply()
    if fault is Fault.TIMEOUT:
        await hold(request, settings.timeout_delay_s)
    return response
