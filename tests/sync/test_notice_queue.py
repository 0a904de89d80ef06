"""The notice queue worker on a real store, with an in-memory queue that checks the ordering.

The queue records, at each acknowledgement, whether the notices it acknowledges were already
committed in the inbox (read through a separate session): acknowledged before committed would
lose a notice on a crash in between.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy import select

from connectors.errors import AuthError
from connectors.notice_queue import NoticeQueue, QueuedDelivery
from connectors.webhook_handler import (
    FetchOrder,
    MalformedDeliveryError,
    WebhookAction,
    WebhookRefusedError,
)
from sync.channels import register_channels
from sync.db import Database
from sync.models import InboxState, WebhookDelivery
from sync.notice_queue import NoticeHandler, NoticeQueueWorker


def notice(notification_id: str, order_id: str) -> QueuedDelivery:
    """A notice as a queue hands it over (its receipt: the notification id)."""
    body = json.dumps({"order_id": order_id}).encode()
    return QueuedDelivery(notification_id, "ORDER_CHANGE", body, receipt=notification_id)


class MemoryQueue:
    """A queue serving fixed batches, then long-polling forever; optionally failing at first."""

    def __init__(
        self, db: Database, batches: list[list[QueuedDelivery]], *, failures: int = 0
    ) -> None:
        self.channel = "amazon-us"
        self.db = db
        self._batches = list(batches)
        self.failures = failures
        self.opened = 0
        self.closed = 0
        self.acknowledged: list[str] = []
        self.committed_at_ack: list[bool] = []
        self.polling = asyncio.Event()
        self.closing = asyncio.Event()

    async def open(self) -> None:
        self.opened += 1

    async def close(self) -> None:
        self.closed += 1
        self.closing.set()

    async def batches(self) -> AsyncIterator[Sequence[QueuedDelivery]]:
        if self.failures:
            self.failures -= 1
            raise AuthError("SQS AccessDenied: AWS refused the credentials", channel=self.channel)
        while self._batches:
            yield self._batches.pop(0)
        self.polling.set()
        await asyncio.Event().wait()  # a long poll that never answers
        yield []  # pragma: no cover

    async def acknowledge(self, deliveries: Sequence[QueuedDelivery]) -> None:
        ids = [d.delivery_id for d in deliveries]
        with self.db.read_session() as session:
            stored = set(session.scalars(select(WebhookDelivery.delivery_id)))
        self.committed_at_ack.append(set(ids) <= stored)
        self.acknowledged.extend(ids)

    def map(self, topic: str, body: bytes) -> WebhookAction:
        order_id = json.loads(body).get("order_id")
        if not order_id:
            raise MalformedDeliveryError("no order id")
        return FetchOrder(order_id)


@pytest.fixture
def channel_id(database: Database) -> int:
    with database.session() as session:
        return register_channels(session, {"amazon-us": ("amazon", True)})["amazon-us"]


def inbox(db: Database) -> list[tuple[str, InboxState]]:
    with db.read_session() as session:
        return sorted(session.execute(select(WebhookDelivery.delivery_id, WebhookDelivery.state)))


async def run_until(worker: NoticeQueueWorker, ready: asyncio.Event) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(ready.wait(), timeout=10)
    stop.set()
    await asyncio.wait_for(task, timeout=5)  # returns though a long poll is in flight


def test_notices_are_committed_once_each_then_acknowledged(
    database: Database, channel_id: int
) -> None:
    queue = MemoryQueue(
        database,
        [
            [notice("n-1", "111-1"), notice("n-2", "111-2"), notice("n-1", "111-1")],
            [notice("n-2", "111-2"), notice("n-3", "111-3")],
        ],
    )
    wakes: list[int] = []
    worker = NoticeQueueWorker(database, channel_id, queue, on_recorded=lambda: wakes.append(1))
    asyncio.run(run_until(worker, queue.polling))
    assert inbox(database) == [(f"n-{n}", InboxState.RECEIVED) for n in (1, 2, 3)]
    assert queue.acknowledged == ["n-1", "n-2", "n-1", "n-2", "n-3"]  # duplicates deleted too
    assert queue.committed_at_ack == [True, True]
    assert (worker.received, worker.recorded, len(wakes)) == (5, 3, 2)
    assert queue.closed == queue.opened == 1


def test_a_notice_that_cannot_be_stored_is_not_acknowledged(
    database: Database, channel_id: int
) -> None:
    # No dedupe key: the inbox refuses it, so the batch stays on the queue for another try.
    queue = MemoryQueue(database, [[notice("n-1", "111-1"), notice("", "111-2")]])
    worker = NoticeQueueWorker(database, channel_id, queue, retry_after_s=0.01)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))

        await asyncio.wait_for(queue.closing.wait(), timeout=10)
        stop.set()
        await asyncio.wait_for(task, timeout=5)

    asyncio.run(scenario())
    assert queue.acknowledged == []
    assert inbox(database) == []  # the batch is one transaction
    assert worker.problem == "ValueError"


def test_refused_credentials_pause_the_queue_and_it_is_read_again(
    database: Database, channel_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    queue = MemoryQueue(database, [[notice("n-1", "111-1")]], failures=3)
    worker = NoticeQueueWorker(database, channel_id, queue, retry_after_s=0.01)
    with caplog.at_level(logging.INFO, logger="sync.notice_queue"):
        asyncio.run(run_until(worker, queue.polling))
    assert queue.opened == 4 and queue.closed == 4
    assert queue.acknowledged == ["n-1"]
    assert worker.problem is None
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "AccessDenied" in errors[0].getMessage()  # logged once
    assert any("read again" in r.getMessage() for r in caplog.records)


def test_the_inbox_worker_maps_stored_notices_through_the_queue(database: Database) -> None:
    queue = MemoryQueue(database, [])
    handler = NoticeHandler(queue)
    assert isinstance(queue, NoticeQueue)
    assert handler.map("ORDER_CHANGE", b'{"order_id": "111-1"}') == FetchOrder("111-1")
    with pytest.raises(WebhookRefusedError):
        handler.verify({}, b"{}")  # nothing of this channel comes over HTTP
