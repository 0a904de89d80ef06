"""The webhook receiver under concurrency: group commit, and 413 without reading the whole body.

The daemon's webhook app with one Shopify channel, driven through httpx's ASGI transport, on a
real store. Commits are counted with an SQLAlchemy `commit` event; a gate in the same event holds
one commit open so that the deliveries sent meanwhile are known to share the next transaction.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from connectors.shopify.webhook_handler import ShopifyWebhookHandler
from sync.channels import register_channels
from sync.db import Database
from sync.http.commit_queue import CommitQueue
from sync.http.webhook_receiver import create_receiver
from sync.http.webhooks import create_webhook_app
from sync.models import WebhookDelivery
from tests.sync.test_webhook_receiver import SECRET, SHOP, headers, order_payload

pytestmark = pytest.mark.anyio

DEADLINE_S = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Commits:
    """Counts the store's commits; can hold the next one open, or make them fail."""

    def __init__(self, database: Database) -> None:
        self.count = 0
        self.is_failing = False
        self.held = threading.Event()  # set while a commit waits at the gate
        self._gate: threading.Event | None = None
        self._engine = database.engine
        event.listen(self._engine, "commit", self._on_commit)

    def _on_commit(self, _connection: Connection) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            self.held.set()
            gate.wait(DEADLINE_S)
        if self.is_failing:
            raise OperationalError("COMMIT", None, Exception("disk I/O error"))
        self.count += 1

    def hold_next(self) -> threading.Event:
        """The next commit waits until the returned event is set."""
        gate = threading.Event()
        self._gate = gate
        return gate

    def close(self) -> None:
        event.remove(self._engine, "commit", self._on_commit)


class Rig:
    """One channel `shop` served by the receiver, its commit queue and a commit counter."""

    def __init__(self, database: Database, max_body_bytes: int = 1024 * 1024) -> None:
        self.db = database
        with database.session() as session:
            channel_id = register_channels(session, {"shop": ("shopify", True)})["shop"]
        self.queue = CommitQueue(database)
        self.recorded = 0
        self.commits = Commits(database)
        self.app = create_webhook_app(
            {
                "shop": create_receiver(
                    database,
                    channel="shop",
                    channel_id=channel_id,
                    handler=ShopifyWebhookHandler([SECRET], shop_domain=SHOP),
                    on_recorded=self._recorded,
                    commit_queue=self.queue,
                    max_body_bytes=max_body_bytes,
                )
            }
        )
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://test"
        )

    def _recorded(self) -> None:
        self.recorded += 1

    async def deliver(self, order_id: int, event_id: str | None = None) -> httpx.Response:
        body = json.dumps(order_payload(order_id)).encode()
        sent = headers(body, "orders/create", event_id=event_id or f"ev-{order_id}")
        return await self.client.post("/webhooks/shop", content=body, headers=sent)

    async def hold_commit(self) -> tuple[threading.Event, asyncio.Task[httpx.Response]]:
        """A delivery whose commit is held open: the writer is busy until the gate is set."""
        gate = self.commits.hold_next()
        blocker = asyncio.create_task(self.deliver(1))
        await until(self.commits.held.is_set)
        return gate, blocker

    def delivery_ids(self) -> list[str]:
        with self.db.read_session() as session:
            return sorted(session.scalars(select(WebhookDelivery.delivery_id)))


async def until(predicate: Any) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.005)


@pytest.fixture
def rig(database: Database) -> Iterator[Rig]:
    made = Rig(database)
    yield made
    made.commits.close()


async def test_concurrent_deliveries_are_all_answered_after_fewer_commits(rig: Rig) -> None:
    answers = await asyncio.gather(*(rig.deliver(1000 + i) for i in range(50)))
    assert [a.status_code for a in answers] == [200] * 50
    assert {a.json()["status"] for a in answers} == {"received"}
    expected = sorted(f"event:ev-{1000 + i}:orders/create" for i in range(50))
    assert rig.delivery_ids() == expected
    assert rig.recorded == 50
    assert 1 <= rig.commits.count < 50


async def test_deliveries_arriving_during_a_commit_share_the_next_one(rig: Rig) -> None:
    gate, blocker = await rig.hold_commit()
    tasks = [asyncio.create_task(rig.deliver(1000 + i)) for i in range(50)]
    await until(lambda: rig.queue.waiting == 50)
    assert not any(task.done() for task in tasks)  # nobody answered before its commit
    gate.set()
    answers = await asyncio.gather(blocker, *tasks)
    assert [a.status_code for a in answers] == [200] * 51
    assert rig.commits.count == 2  # the held one, then all fifty together
    assert len(rig.delivery_ids()) == 51


async def test_a_delivery_twice_in_one_group_is_stored_once_and_both_answered(rig: Rig) -> None:
    gate, blocker = await rig.hold_commit()
    twins = [asyncio.create_task(rig.deliver(2000, event_id="ev-twin")) for _ in range(2)]
    await until(lambda: rig.queue.waiting == 2)
    gate.set()
    await blocker
    answers = await asyncio.gather(*twins)
    assert [a.status_code for a in answers] == [200, 200]
    assert sorted(a.json()["status"] for a in answers) == ["duplicate", "received"]
    assert rig.delivery_ids().count("event:ev-twin:orders/create") == 1
    assert rig.commits.count == 2
    assert rig.recorded == 2  # the blocker and one twin


async def test_a_failed_commit_answers_503_to_each_of_its_requests_and_stores_none(
    rig: Rig,
) -> None:
    gate, blocker = await rig.hold_commit()
    tasks = [asyncio.create_task(rig.deliver(3000 + i)) for i in range(5)]
    await until(lambda: rig.queue.waiting == 5)
    rig.commits.is_failing = True
    gate.set()
    answers = await asyncio.gather(blocker, *tasks)
    assert [a.status_code for a in answers] == [503] * 6
    assert all("disk" not in a.text for a in answers)
    assert rig.delivery_ids() == []
    assert rig.recorded == 0

    # The channel delivers again; the queue has recovered.
    rig.commits.is_failing = False
    again = await rig.deliver(3000)
    assert (again.status_code, again.json()) == (200, {"status": "received"})
    assert rig.delivery_ids() == ["event:ev-3000:orders/create"]


def _signed(order_id: int = 4000) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(order_payload(order_id)).encode()
    return body, headers(body, "orders/create", event_id=f"ev-{order_id}")


async def test_a_streamed_oversize_body_is_refused_without_being_read_whole(
    database: Database,
) -> None:
    limit = 64 * 1024
    chunk = b"x" * 4096
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(10_000):  # 40 MiB if it were read to the end
            pulled += len(chunk)
            yield chunk

    rig = Rig(database, max_body_bytes=limit)
    try:
        _, sent = _signed()
        answer = await rig.client.post("/webhooks/shop", content=endless(), headers=sent)
        assert "content-length" not in {k.lower() for k in answer.request.headers}
        assert answer.status_code == 413
        assert pulled <= limit + len(chunk)
        assert rig.delivery_ids() == []
    finally:
        rig.commits.close()


async def test_a_declared_oversize_body_is_refused_before_its_first_byte(
    database: Database,
) -> None:
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        pulled += 1
        yield b"x" * 2048

    rig = Rig(database, max_body_bytes=1024)
    try:
        _, sent = _signed()
        answer = await rig.client.post(
            "/webhooks/shop", content=body(), headers={**sent, "Content-Length": "2048"}
        )
        assert answer.status_code == 413
        assert pulled == 0
    finally:
        rig.commits.close()


@pytest.mark.parametrize(("slack", "status"), [(0, 200), (-1, 413)])
async def test_the_limit_is_inclusive(database: Database, slack: int, status: int) -> None:
    body, sent = _signed()
    rig = Rig(database, max_body_bytes=len(body) + slack)
    try:
        answer = await rig.client.post("/webhooks/shop", content=body, headers=sent)
        assert answer.status_code == status
        assert len(rig.delivery_ids()) == (1 if status == 200 else 0)
    finally:
        rig.commits.close()
