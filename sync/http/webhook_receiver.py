"""One channel's `POST /webhooks/{channel}`: verify, persist, answer; processing comes after.

The order matters (DESIGN.md, "Order in"; invariant 2): the raw body is verified by the channel's
webhook handler before anything is stored (401 and nothing written when it fails), then stored in
the inbox under the delivery id the handler names, committed, and only then answered 200, so a
delivery the channel counts as delivered is never lost. A repeat of a stored delivery id is
answered 200 too (the channel must stop resending) and stores nothing. The inbox worker is woken
after the commit; nothing here waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connectors.webhook_handler import WebhookHandler, WebhookRefusedError
from sync.db import Database
from sync.inbox import record_delivery

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024  # far above any documented Shopify payload


def create_receiver(
    db: Database,
    *,
    channel: str,
    channel_id: int,
    handler: WebhookHandler,
    on_recorded: Callable[[], None] = lambda: None,
) -> Callable[[Request], Awaitable[Response]]:
    """The request handler of one channel's webhook route."""

    async def receive(request: Request) -> Response:
        if request.method != "POST":
            return JSONResponse({"error": "method not allowed"}, status_code=405)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return JSONResponse({"error": "body too large"}, status_code=413)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": "body too large"}, status_code=413)
        try:
            delivery = handler.verify(request.headers, body)
        except WebhookRefusedError as err:
            log.warning("channel %s: webhook refused: %s", channel, err)
            return JSONResponse({"error": str(err)}, status_code=401)
        is_new = await asyncio.to_thread(
            db.transact,
            lambda session: record_delivery(
                session,
                channel_id=channel_id,
                delivery_id=delivery.delivery_id,
                topic=delivery.topic,
                body=body,
            ),
        )
        if is_new:
            on_recorded()
        return JSONResponse({"status": "received" if is_new else "duplicate"})

    return receive
