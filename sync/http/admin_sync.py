"""Admin route that runs a channel's poll and reconcile now. Mounted by `admin.py`.

`POST /api/channels/{name}/sync` answers when both have run: 200 with what each read and
repaired, 502 when the channel failed one of them (its error in the body), 404 for a channel
this daemon does not serve (unknown, disabled, or no connector), 409 when the channel's
credentials are still refused (the check is made first), 503 while the daemon is stopping.
A poll already under way is joined, not repeated (`Scheduler.sync_now`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync.scheduler import ChannelAuthFailedError

if TYPE_CHECKING:
    from sync.http.admin import AdminContext

_NAME_MAX = 64


def _error(status_code: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status_code)


async def channel_sync(request: Request) -> Response:
    """Poll and reconcile one channel now, in this process; answer what each did."""
    ctx: AdminContext = request.app.state.ctx
    name = str(request.path_params["name"])
    if ctx.sync_channel is None or ctx.is_draining():
        return _error(503, "unavailable", "the scheduler is not running in this process")
    shown = name if len(name) <= _NAME_MAX else f"{name[:_NAME_MAX]}..."
    try:
        results = await ctx.sync_channel(name)
    except KeyError:
        detail = f"no channel {shown!r} is enabled with a connector in this daemon"
        return _error(404, "not_found", detail)
    except ChannelAuthFailedError:
        detail = (
            f"channel {shown}: the channel still refuses our credentials; fix them in its "
            "channel file (the daemon re-checks them on its own)"
        )
        return _error(409, "auth_failed", detail)
    failed = any(not result.get("ok") for result in results.values())
    return JSONResponse({"channel": name, **results}, status_code=502 if failed else 200)


SYNC_ROUTES = [Route("/api/channels/{name}/sync", channel_sync, methods=["POST"])]
