"""A connector that sizes its batches by the backlog (Amazon: a few patches, or one feed) is
handed no more than it asks for, and everything when the backlog calls for one big push."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy.orm import Session

from connectors.base import Capabilities
from connectors.memory import MemoryMarketplace
from sync.db import Database
from sync.push_policy import claim_sizing
from sync.stock_ops import set_stock
from tests.sync.engine_harness import ChannelSpec, push_until_idle
from tests.sync.test_pusher import LandingConnector, _channel_matches_ledger, _store

BIG = Capabilities(max_stock_batch=250, max_in_flight=1)
SMALL_PUSH = 2
BIG_BACKLOG = 10


class SizedConnector(LandingConnector):
    """Two listings a push while at most BIG_BACKLOG wait; everything past that."""

    def __init__(self, market: MemoryMarketplace, spec: ChannelSpec) -> None:
        super().__init__(market, spec)
        self.asked: list[int] = []

    def stock_batch_size(self, due: int) -> int:
        """As Amazon's: few per push below the threshold, all of them above it."""
        self.asked.append(due)
        return SMALL_PUSH if due <= BIG_BACKLOG else 250


def _change(database: Database, skus: Sequence[str], on_hand: int) -> None:
    def write(session: Session) -> None:
        for sku in skus:
            set_stock(session, sku, "default", on_hand)

    database.transact(write)


def _run(database: Database, count: int) -> SizedConnector:
    skus = [f"S{i:02d}" for i in range(count)]
    spec = ChannelSpec("amazon", BIG)
    store = _store(database, spec, skus)
    channel = store.channels["amazon"]
    sized = SizedConnector(channel.market, spec)
    channel.connector = sized
    _change(database, skus, 4)
    asyncio.run(push_until_idle(store, channels=["amazon"]))
    _channel_matches_ledger(store, "amazon")
    return sized


def test_a_small_backlog_goes_in_pushes_of_the_size_asked(database: Database) -> None:
    sized = _run(database, 6)
    assert sized.asked  # the pusher asked the connector
    assert [len(refs) for _, refs in sized.landed] == [2, 2, 2]


def test_a_big_backlog_goes_in_one_push(database: Database) -> None:
    sized = _run(database, 12)
    assert [len(refs) for _, refs in sized.landed] == [12]


def test_a_connector_without_sizing_keeps_its_capabilities() -> None:
    assert claim_sizing(object()) is None
