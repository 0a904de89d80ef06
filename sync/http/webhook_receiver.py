"""One channel's `POST /webhooks/{channel}`: verify, persist, answer; processing comes after.

The order matters (DESIGN.md, "Order in"; invariant 2): the raw body is verified by the channel's
webhook handler before anything is stored (401 and nothing written when it fails), then stored in
the inbox under the delivery id the handler names, committed, and only then answered 200, so a
delivery the channel counts as delivered is never lost. A repeat of a stored delivery id is
answered 200 too (the channel must stop resending) and stores nothing. The inbox worker is woken
after the commit; nothing here waits for it. Deliveries that arrive together share one commit
(`CommitQueue`, one fsync for many); a commit that fails answers 503 to each of its requests, so
the channel delivers again, and stores none of them.

A body over `max_body_bytes` is refused with 413 without being read whole: by its declared
Content-Length, or by counting the bytes as they stream in and stopping at the limit.

A handler may differ (eBay): its `answers` replace 200/401 (eBay wants 204/412); `prepare`
fetches what `verify` needs first (a key; 503 when the channel cannot be asked now, so it
delivers again); `answer_check` answers a `GET` endpoint check.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError
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
from sync.http.commit_queue import CommitQueue

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # listeners.webhooks.max_body_bytes; far above a Shopify payload


def create_receiver(
    db: Database,
    *,
    channel: str,
    channel_id: int,
    handler: WebhookHandler,
    on_recorded: Callable[[], None] = lambda: None,
    commit_queue: CommitQueue | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Callable[[Request], Awaitable[Response]]:
    """The request handler of one channel's webhook route.

    Pass one `commit_queue` to every channel's receiver so that all of them share commits.
    """
    queue = commit_queue or CommitQueue(db)
    answers = answers_of(handler)
    checker = handler if isinstance(handler, AnswersEndpointCheck) else None
    preparer = handler if isinstance(handler, PreparesVerification) else None

    async def receive(request: Request) -> Response:
        if request.method == "GET" and checker is not None:
            return _answer_check(checker, request, channel)
        if request.method != "POST":
            return JSONResponse({"error": "method not allowed"}, status_code=405)
        body = await _read_body(request, max_body_bytes)
        if body is None:
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
        try:
            is_new = await queue.record(
                channel_id=channel_id,
                delivery_id=delivery.delivery_id,
                topic=delivery.topic,
                body=body,
            )
        except SQLAlchemyError:
            # Logged once per failed group by the queue; nothing of this delivery was stored.
            return JSONResponse({"error": "try again later"}, status_code=503)
        if is_new:
            on_recorded()
        if answers.accepted == 204:
            return Response(status_code=204)
        return JSONResponse(
            {"status": "received" if is_new else "duplicate"}, status_code=answers.accepted
        )

    return receive


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None  # the rest is never read; the server discards it
        chunks.append(chunk)
    return b"".join(chunks)


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
