"""Notice queues in: read a channel's queue, persist each notice in the inbox, then acknowledge.

For a channel that delivers notifications through a queue (Amazon's ORDER_CHANGE on SQS), this
worker is the webhook receiver: each batch read from the queue is recorded in the webhook inbox
under the channel's dedupe key (NotificationId) in one transaction, and only after that commit
are the messages deleted from the queue (invariant 2: nothing acknowledged before it is
committed). A crash in between brings the messages back after their visibility timeout, and the
inbox's unique key absorbs them. The inbox worker then does what the stored notice asks (read the
order with getOrder, ingest it), exactly as for a webhook delivery; `NoticeHandler` gives it the
queue's mapping.

A queue that refuses our credentials or does not exist stops this worker only: the channel keeps
being polled, the problem is logged once and shown in the channel's status, and the queue is
tried again after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from sqlalchemy.orm import Session

from connectors.errors import ConnectorError, RetryableError
from connectors.notice_queue import NoticeQueue, QueuedDelivery
from connectors.webhook_handler import VerifiedDelivery, WebhookAction, WebhookRefusedError
from sync.db import Database
from sync.inbox import record_delivery

log = logging.getLogger(__name__)

RETRY_AFTER_S = 60.0  # after the queue refused us (credentials, no such queue) or failed oddly


class NoticeHandler:
    """A notice queue's mapping, as the inbox worker's webhook handler: nothing comes over HTTP."""

    def __init__(self, queue: NoticeQueue) -> None:
        self._queue = queue

    def verify(self, headers: Mapping[str, str], body: bytes) -> VerifiedDelivery:
        """Always refused: this channel's notices come from its queue."""
        raise WebhookRefusedError("this channel's notifications come from its queue, not HTTP")

    def map(self, topic: str, body: bytes) -> WebhookAction:
        """What the stored notice asks (the queue knows its own format)."""
        return self._queue.map(topic, body)


class NoticeQueueWorker:
    """Reads one channel's notice queue into the inbox until stopped."""

    def __init__(
        self,
        db: Database,
        channel_id: int,
        queue: NoticeQueue,
        *,
        on_recorded: Callable[[], None] = lambda: None,
        retry_after_s: float = RETRY_AFTER_S,
    ) -> None:
        self.db = db
        self.channel_id = channel_id
        self.queue = queue
        self.name = f"notices-{queue.channel}"
        self.on_recorded = on_recorded  # new notices committed: wake the inbox worker
        self.retry_after_s = retry_after_s
        self.problem: str | None = None  # why the queue is not being read, for the status
        self.received = 0  # notices read from the queue, duplicates included
        self.recorded = 0  # of which new to the inbox

    async def run(self, stop: asyncio.Event) -> None:
        """Read until `stop` is set; a batch being recorded is finished and acknowledged first."""
        while not stop.is_set():
            try:
                await self._consume(stop)
            except ConnectorError as err:
                self._fail(str(err))
            except Exception as err:
                # The supervisor of this queue: a store or client hiccup must not end it for good.
                log.exception("channel %s: reading the notice queue failed", self.queue.channel)
                self._fail(type(err).__name__)
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.retry_after_s)

    def _fail(self, problem: str) -> None:
        if self.problem is None:
            log.error(
                "channel %s: notice queue not read (%s); orders still come by polling; "
                "retrying every %.0f s",
                self.queue.channel,
                problem,
                self.retry_after_s,
            )
        self.problem = problem

    async def _consume(self, stop: asyncio.Event) -> None:
        await self.queue.open()
        batches = self.queue.batches()
        stopping = asyncio.create_task(stop.wait())
        try:
            while True:
                receiving = asyncio.create_task(_next(batches))
                await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    # Stop during the long poll: whatever it would have read stays on the queue.
                    receiving.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await receiving
                    return
                batch = receiving.result()
                if batch is None:
                    return
                if self.problem is not None:
                    log.info("channel %s: notice queue read again", self.queue.channel)
                    self.problem = None
                await self._record(batch)
                await self._acknowledge(batch)
        finally:
            stopping.cancel()
            close = getattr(batches, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
            await self.queue.close()

    async def _record(self, batch: Sequence[QueuedDelivery]) -> None:
        def work(session: Session) -> int:
            return sum(
                record_delivery(
                    session,
                    channel_id=self.channel_id,
                    delivery_id=item.delivery_id,
                    topic=item.topic,
                    body=item.body,
                )
                for item in batch
            )

        new = await asyncio.to_thread(self.db.transact, work)
        self.received += len(batch)
        self.recorded += new
        if new:
            self.on_recorded()

    async def _acknowledge(self, batch: Sequence[QueuedDelivery]) -> None:
        try:
            await self.queue.acknowledge(batch)
        except RetryableError as err:
            # Committed already: the messages come back after their visibility timeout and the
            # inbox dedupes them.
            log.warning(
                "channel %s: notices recorded but not deleted from the queue: %s",
                self.queue.channel,
                err,
            )


async def _next(
    batches: AsyncIterator[Sequence[QueuedDelivery]],
) -> Sequence[QueuedDelivery] | None:
    try:
        return await anext(batches)
    except StopAsyncIteration:
        return None
