"""One channel's `POST /webhooks/{channel}`: verify, persist, answer; processing comes after.

The order matters (DESIGN.md, "Order in"; invariant 2): the raw body is verified by the channel's
webhook handler before anything is stored (401 and nothing written when it fails), then stored in
the inbox under the delivery id the handler names, committed, and only then answered 200, so a
delivery the channel counts as delivered is never lost. A repeat of a stored delivery id is
answered 200 too (the channel must stop resending) and stores nothing. The inbox worker is woken
after the commit; nothing here waits for it.

A handler may differ (eBay): its `answers` replace 200/401 (eBay wants 204/412); `prepare`
fetches what `verify` needs first (a key; 503 when the channel cannot be asked now, so it
delivers again); `answer_check` answers a `GET` endpoint check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connectors.errors import ConnectorError
from connectors.webhook_handler import (
    AnswersEndpointCheck,
    EndpointCheckError,
    PreparesVerification,
    WebhookHandler,
    WebhookRefusedError,
    answers_of,
)
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
    answers = answers_of(handler)
    checker = handler if isinstance(handler, AnswersEndpointCheck) else None
    preparer = handler if isinstance(handler, PreparesVerification) else None

    async def receive(request: Request) -> Response:
        if request.method == "GET" and checker is not None:
            return _answer_check(checker, request, channel)
        if request.method != "POST":
            return JSONResponse({"error": "method not allowed"}, status_code=405)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return JSONResponse({"error": "body too large"}, status_code=413)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": "body too large"}, status_code=413)
        try:
            if preparer is not None:
                await preparer.prepare(request.headers, body)
            delivery = handler.verify(request.headers, body)
        except WebhookRefusedError as err:
            log.warning("channel %s: webhook refused: %s", channel, err)
            return JSONResponse({"error": str(err)}, status_code=answers.refused)
        except ConnectorError as err:
            log.warning("channel %s: webhook not verifiable now: %s", channel, err)
            return JSONResponse({"error": "try again later"}, status_code=503)
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
        if answers.accepted == 204:
            return Response(status_code=204)
        return JSONResponse(
            {"status": "received" if is_new else "duplicate"}, status_code=answers.accepted
        )

    return receive


def _answer_check(handler: AnswersEndpointCheck, request: Request, channel: str) -> Response:
    try:
        answer = handler.answer_check(request.query_params)
    except WebhookRefusedError as err:
        return JSONResponse({"error": str(err)}, status_code=400)
    except EndpointCheckError as err:
        log.error("channel %s: endpoint check not answered: %s", channel, err)
        return JSONResponse({"error": "endpoint check not configured"}, status_code=503)
    if answer is None:
        return JSONResponse({"error": "method not allowed"}, status_code=405)
    log.info("channel %s: answered the endpoint check", channel)
    return JSONResponse(dict(answer))
