"""The webhook inbox: each delivery id stored once, however often and however concurrently sent."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from sync.db import Database
from sync.inbox import NewDelivery as New
from sync.inbox import (
    claim_deliveries,
    delivery_body,
    mark_failed,
    mark_processed,
    record_deliveries,
    record_delivery,
)
from sync.models import Channel, InboxState, WebhookDelivery

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _channels(database: Database) -> tuple[int, int]:
    with database.session() as session:
        shop, market = Channel(name="shop", kind="memory"), Channel(name="market", kind="memory")
        session.add_all([shop, market])
        session.flush()
        return shop.id, market.id


def _rows(database: Database) -> list[tuple[int, str, bytes, InboxState, int]]:
    with database.read_session() as session:
        return [
            (row.channel_id, row.delivery_id, delivery_body(row), row.state, row.attempts)
            for row in session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))
        ]


def test_a_repeated_delivery_id_is_stored_once_per_channel(database: Database) -> None:
    shop, market = _channels(database)
    with database.session() as session:
        assert record_delivery(
            session, channel_id=shop, delivery_id="d-1", topic="orders/create", body=b"first"
        )
    with database.session() as session:
        assert not record_delivery(
            session, channel_id=shop, delivery_id="d-1", topic="orders/create", body=b"again"
        )
        # Another channel's ids are its own.
        assert record_delivery(
            session, channel_id=market, delivery_id="d-1", topic="ORDER", body=b"other"
        )
    assert _rows(database) == [
        (shop, "d-1", b"first", InboxState.RECEIVED, 0),
        (market, "d-1", b"other", InboxState.RECEIVED, 0),
    ]


def test_a_group_of_deliveries_is_stored_in_one_statement_each_id_once(
    database: Database,
) -> None:
    """The group commit's insert: per delivery, new or not, in the group's order: an id stored
    before, and an id twice in the group, are not new (the first body is kept)."""
    shop, market = _channels(database)
    with database.session() as session:
        record_delivery(session, channel_id=shop, delivery_id="old", topic="t", body=b"old")
    group = [
        New(shop, "a", "t", b"a-1"),
        New(shop, "old", "t", b"old-again"),
        New(market, "a", "t", b"market-a"),
        New(shop, "a", "t", b"a-2"),
        New(shop, "b", "t", b"b"),
    ]
    with database.session() as session:
        assert record_deliveries(session, group) == [True, False, True, False, True]
    assert sorted((c, d, body) for c, d, body, _, _ in _rows(database)) == sorted(
        [
            (shop, "old", b"old"),
            (shop, "a", b"a-1"),
            (market, "a", b"market-a"),
            (shop, "b", b"b"),
        ]
    )


def test_two_threads_recording_the_same_id_at_once_store_one_row(database: Database) -> None:
    shop, _ = _channels(database)
    rounds = 10
    barrier = threading.Barrier(2)

    def record(n: int, body: bytes) -> bool:
        barrier.wait(timeout=30)
        with database.session() as session:
            return record_delivery(
                session, channel_id=shop, delivery_id=f"race-{n}", topic="t", body=body
            )

    with ThreadPoolExecutor(max_workers=2) as pool:
        for n in range(rounds):
            first = pool.submit(record, n, b"a")
            second = pool.submit(record, n, b"b")
            assert sorted([first.result(timeout=60), second.result(timeout=60)]) == [False, True]
    with database.read_session() as session:
        per_id = session.execute(
            select(WebhookDelivery.delivery_id, func.count())
            .group_by(WebhookDelivery.delivery_id)
            .order_by(WebhookDelivery.delivery_id)
        ).all()
    assert [(d, n) for d, n in per_id] == [(f"race-{n}", 1) for n in range(rounds)]


def test_claim_oldest_first_then_processed_deliveries_are_not_claimed_again(
    database: Database,
) -> None:
    shop, market = _channels(database)
    with database.session() as session:
        for n, channel in enumerate([shop, market, shop]):
            record_delivery(
                session,
                channel_id=channel,
                delivery_id=f"d-{n}",
                topic="t",
                body=b"{}",
                now=T0 - timedelta(minutes=n),  # d-2 arrived first
            )
    with database.session() as session:
        claimed = claim_deliveries(session, 2)
        assert [d.delivery_id for d in claimed] == ["d-2", "d-1"]
        mark_processed(session, [d.id for d in claimed], now=T0)
    with database.session() as session:
        assert [d.delivery_id for d in claim_deliveries(session, 10)] == ["d-0"]
        assert [d.delivery_id for d in claim_deliveries(session, 10, channel_id=market)] == []
    with database.read_session() as session:
        processed = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.state == InboxState.PROCESSED)
        ).all()
    assert sorted(d.delivery_id for d in processed) == ["d-1", "d-2"]
    assert all(d.processed_at == T0 for d in processed)


def test_a_failing_delivery_is_retried_then_left_failed(database: Database) -> None:
    shop, _ = _channels(database)
    with database.session() as session:
        record_delivery(session, channel_id=shop, delivery_id="bad", topic="t", body=b"{")
    states = []
    for attempt in range(3):
        with database.session() as session:
            (delivery,) = claim_deliveries(session, 10)
        with database.session() as session:
            states.append(mark_failed(session, delivery, f"unparsable {attempt}", max_attempts=3))
    assert states == [InboxState.RECEIVED, InboxState.RECEIVED, InboxState.FAILED]
    with database.session() as session:
        assert claim_deliveries(session, 10) == []
        row = session.scalars(select(WebhookDelivery)).one()
        assert (row.attempts, row.error, row.state) == (3, "unparsable 2", InboxState.FAILED)
        # A late failure report for a delivery already given up on changes nothing.
        assert mark_failed(session, row, "late") == InboxState.FAILED
        assert row.attempts == 3


def test_two_claimers_on_postgresql_never_take_the_same_delivery(pg_database: Database) -> None:
    shop, _ = _channels(pg_database)
    with pg_database.session() as session:
        for n in range(4):
            record_delivery(
                session,
                channel_id=shop,
                delivery_id=f"d-{n}",
                topic="t",
                body=b"{}",
                now=T0 + timedelta(seconds=n),
            )
    with pg_database.session() as first:
        mine = claim_deliveries(first, 2)
        with pg_database.session() as second:
            theirs = claim_deliveries(second, 10)
        assert [d.delivery_id for d in mine] == ["d-0", "d-1"]
        assert [d.delivery_id for d in theirs] == ["d-2", "d-3"]
