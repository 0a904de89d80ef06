"""Deliveries that need an order read (a notice naming the order) are read a few at a time per
channel, each channel apart: a channel whose reads are slow or rate-limited (Amazon's getOrder at
0.5/s) no longer holds the other channels' deliveries behind it, and every read still commits
its delivery only once its order is in the store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from sqlalchemy import select

from connectors.base import Capabilities, Order, OrderStatus
from connectors.memory import MemoryConnector, MemoryMarketplace
from connectors.webhook_handler import FetchOrder, VerifiedDelivery, WebhookAction
from sync.db import Database
from sync.inbox import record_delivery
from sync.inbox_worker import FETCH_CONCURRENCY, InboxChannel, InboxWorker
from sync.ingest import ChannelRef
from sync.models import Channel, InboxState, WebhookDelivery
from sync.models import Order as OrderRow

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
QUICK_NOTICES = 3 * FETCH_CONCURRENCY


class NamesTheOrder:
    """A handler whose every stored body is the id of an order to read."""

    def verify(self, headers: Mapping[str, str], body: bytes) -> VerifiedDelivery:
        raise AssertionError("not used: the deliveries are stored by the test")

    def map(self, topic: str, body: bytes) -> WebhookAction:
        return FetchOrder(body.decode())


class Reader(MemoryConnector):
    """Answers any order (no lines) once `open` is set; counts reads in flight."""

    def __init__(self, name: str, open_: asyncio.Event) -> None:
        super().__init__(MemoryMarketplace(), name=name, capabilities=Capabilities())
        self.open = open_
        self.in_flight = 0
        self.most_in_flight = 0
        self.reads: list[str] = []

    async def fetch_order(self, external_id: str) -> Order:
        self.reads.append(external_id)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.open.wait()
            await asyncio.sleep(0.01)  # a round trip: reads overlap only if run together
        finally:
            self.in_flight -= 1
        return Order(
            external_id=external_id,
            status=OrderStatus.OPEN,
            currency="USD",
            updated_at=T0,
            lines=(),
        )


def _setup(database: Database) -> tuple[int, int]:
    with database.session() as session:
        slow, quick = Channel(name="slow", kind="memory"), Channel(name="quick", kind="memory")
        session.add_all([slow, quick])
        session.flush()
        record_delivery(session, channel_id=slow.id, delivery_id="s-1", topic="t", body=b"S-1")
        for n in range(QUICK_NOTICES):
            record_delivery(
                session,
                channel_id=quick.id,
                delivery_id=f"q-{n}",
                topic="t",
                body=f"Q-{n}".encode(),
            )
        return slow.id, quick.id


def _states(database: Database, channel_id: int) -> list[InboxState]:
    with database.read_session() as session:
        return list(
            session.scalars(
                select(WebhookDelivery.state).where(WebhookDelivery.channel_id == channel_id)
            )
        )


def _stored(database: Database, channel_id: int) -> set[str]:
    with database.read_session() as session:
        return set(
            session.scalars(select(OrderRow.external_id).where(OrderRow.channel_id == channel_id))
        )


def test_a_slow_channel_does_not_hold_the_others_reads(database: Database) -> None:
    slow_id, quick_id = _setup(database)

    async def scenario() -> Reader:
        held, free = asyncio.Event(), asyncio.Event()
        free.set()
        slow, quick = Reader("slow", held), Reader("quick", free)
        worker = InboxWorker(
            database,
            [
                InboxChannel(ChannelRef(slow_id, "slow"), NamesTheOrder(), slow),
                InboxChannel(ChannelRef(quick_id, "quick"), NamesTheOrder(), quick),
            ],
        )
        round_ = asyncio.create_task(worker.process_once())
        deadline = asyncio.get_running_loop().time() + 20
        while set(_states(database, quick_id)) != {InboxState.PROCESSED}:
            assert asyncio.get_running_loop().time() < deadline, "quick reads waited on slow"
            assert not round_.done()
            await asyncio.sleep(0.01)
        # The slow channel's notice is still unread: received, and its order not stored.
        assert _states(database, slow_id) == [InboxState.RECEIVED]
        assert _stored(database, slow_id) == set()
        held.set()
        await asyncio.wait_for(round_, 20)
        return quick

    quick = asyncio.run(scenario())
    assert _states(database, slow_id) == [InboxState.PROCESSED]
    assert _stored(database, slow_id) == {"S-1"}
    assert _stored(database, quick_id) == {f"Q-{n}" for n in range(QUICK_NOTICES)}
    assert 1 < quick.most_in_flight <= FETCH_CONCURRENCY


def test_a_read_that_hangs_holds_no_later_delivery(database: Database) -> None:
    """The running worker does not wait for a round's reads before the next round: a read the
    channel holds (a call timing out after 30 s) leaves the deliveries that arrive meanwhile, on
    every channel and its own, to be processed; and the delivery being read is read once, not
    again by each round that runs meanwhile."""
    slow_id, quick_id = _setup(database)
    held, free = asyncio.Event(), asyncio.Event()
    free.set()
    slow, quick = Reader("slow", held), Reader("quick", free)

    async def scenario() -> None:
        worker = InboxWorker(
            database,
            [
                InboxChannel(ChannelRef(slow_id, "slow"), NamesTheOrder(), slow),
                InboxChannel(ChannelRef(quick_id, "quick"), NamesTheOrder(), quick),
            ],
            idle_s=0.05,  # many rounds while the read hangs
        )
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        await until("the quick notices", lambda: _stored(database, quick_id) == _quick())
        # Later deliveries, on the quick channel and on the slow one, while S-1's read hangs.
        with database.session() as session:
            record_delivery(
                session, channel_id=quick_id, delivery_id="q-late", topic="t", body=b"Q-late"
            )
            record_delivery(session, channel_id=slow_id, delivery_id="s-2", topic="t", body=b"S-2")
        worker.wake()
        await until("Q-late", lambda: "Q-late" in _stored(database, quick_id))
        await until("S-2 read", lambda: "S-2" in slow.reads)
        assert _stored(database, slow_id) == set()  # both reads held by the channel
        held.set()
        await until("the slow orders", lambda: _stored(database, slow_id) == {"S-1", "S-2"})
        stop.set()
        await asyncio.wait_for(running, 20)

    asyncio.run(scenario())
    assert sorted(slow.reads) == ["S-1", "S-2"]  # each read once, though rounds ran meanwhile
    assert set(_states(database, slow_id)) == {InboxState.PROCESSED}
    assert set(_states(database, quick_id)) == {InboxState.PROCESSED}


def _quick() -> set[str]:
    return {f"Q-{n}" for n in range(QUICK_NOTICES)}


def test_notices_of_one_order_waiting_for_a_read_share_it(database: Database) -> None:
    """Duplicated notices, and several of one order, that wait while the channel's read slots
    are busy cost one read: a read that starts after a notice was stored shows its change. A
    notice stored after its order's read started gets a read of its own."""
    with database.session() as session:
        channel = Channel(name="busy", kind="memory")
        session.add(channel)
        session.flush()
        channel_id = channel.id
    held = asyncio.Event()
    reader = Reader("busy", held)

    def store(delivery_id: str, order_id: str) -> None:
        with database.session() as session:
            record_delivery(
                session,
                channel_id=channel_id,
                delivery_id=delivery_id,
                topic="t",
                body=order_id.encode(),
            )

    async def scenario() -> None:
        worker = InboxWorker(
            database,
            [InboxChannel(ChannelRef(channel_id, "busy"), NamesTheOrder(), reader)],
            idle_s=0.05,
        )
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        # Fill every read slot with other orders, then three notices of order X and two of Y.
        for n in range(FETCH_CONCURRENCY):
            store(f"busy-{n}", f"B-{n}")
        await until("the slots busy", lambda: reader.in_flight == FETCH_CONCURRENCY)
        for delivery_id, order_id in [("x-1", "X"), ("y-1", "Y"), ("x-2", "X"), ("x-3", "X")]:
            store(delivery_id, order_id)
        store("y-2", "Y")
        worker.wake()
        await until("the notices taken", lambda: worker.being_read == FETCH_CONCURRENCY + 5)
        held.set()
        await until("X and Y stored", lambda: _all_processed(database, channel_id))
        assert (reader.reads.count("X"), reader.reads.count("Y")) == (1, 1)
        # A notice of X stored after X's read: read again (its change may be after that read).
        store("x-4", "X")
        worker.wake()
        await until("x-4 read", lambda: reader.reads.count("X") == 2)
        await until("all processed", lambda: _all_processed(database, channel_id))
        stop.set()
        await asyncio.wait_for(running, 20)

    asyncio.run(scenario())
    assert sorted(reader.reads) == sorted(
        [f"B-{n}" for n in range(FETCH_CONCURRENCY)] + ["X", "Y", "X"]
    )


async def until(what: str, check: Callable[[], bool]) -> None:
    """Poll `check` until true, failing with `what` after 20 s."""
    deadline = asyncio.get_running_loop().time() + 20
    while not check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.01)


def _all_processed(database: Database, channel_id: int) -> bool:
    return set(_states(database, channel_id)) == {InboxState.PROCESSED}
