"""Leases and tick claims in the store: one holder at a time, each tick claimed once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sync.db import Database, sqlite_url
from sync.leases import LeaseGrant, LeaseHeld, acquire, claim_tick, db_now, release
from sync.models import Channel
from sync.single_instance import StoreInUseError, exclusive_store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=20)
SECOND = timedelta(seconds=1)


def _take(database: Database, name: str, owner: str, at: datetime) -> LeaseGrant | LeaseHeld:
    with database.session() as session:
        return acquire(session, name, owner, TTL, at)


def _channel(database: Database) -> int:
    with database.session() as session:
        channel = Channel(name="shop", kind="memory")
        session.add(channel)
        session.flush()
        return channel.id


def test_one_holder_until_it_stops_renewing_then_a_takeover_says_how_late(
    database: Database,
) -> None:
    first = _take(database, "shop:poll", "a", T0)
    assert isinstance(first, LeaseGrant) and first.is_new and first.taken_from is None

    held = _take(database, "shop:poll", "b", T0 + SECOND)
    assert held == LeaseHeld("shop:poll", "a", T0 + TTL)

    renewed = _take(database, "shop:poll", "a", T0 + 10 * SECOND)
    assert isinstance(renewed, LeaseGrant) and not renewed.is_new
    assert renewed.expires_at == T0 + 10 * SECOND + TTL
    # Still held by a: its renewal moved the expiry past b's try at the old expiry.
    assert isinstance(_take(database, "shop:poll", "b", T0 + TTL), LeaseHeld)

    # a stops renewing (it died): b takes the lease once it expires, and knows how stale it was.
    taken = _take(database, "shop:poll", "b", T0 + 31 * SECOND)
    assert isinstance(taken, LeaseGrant) and taken.is_new
    assert taken.taken_from == "a"
    assert taken.takeover_delay == 21 * SECOND  # since a's last heartbeat
    # a comes back (a long pause, not a death): it finds the lease taken.
    assert _take(database, "shop:poll", "a", T0 + 32 * SECOND) == LeaseHeld(
        "shop:poll", "b", T0 + 31 * SECOND + TTL
    )


def test_a_released_lease_is_free_at_once_and_not_a_takeover(database: Database) -> None:
    assert isinstance(_take(database, "shop:poll", "a", T0), LeaseGrant)
    assert isinstance(_take(database, "shop:reconcile", "a", T0), LeaseGrant)
    with database.session() as session:
        release(session, ["shop:poll", "shop:reconcile"], "b", T0)  # not b's: nothing happens
    assert isinstance(_take(database, "shop:poll", "c", T0 + SECOND), LeaseHeld)
    with database.session() as session:
        release(session, ["shop:poll"], "a", T0)
    taken = _take(database, "shop:poll", "c", T0 + SECOND)
    assert isinstance(taken, LeaseGrant) and taken.is_new and taken.taken_from is None
    assert isinstance(_take(database, "shop:reconcile", "c", T0 + SECOND), LeaseHeld)


def test_each_tick_is_claimed_once_and_only_by_the_holder(database: Database) -> None:
    channel_id = _channel(database)
    with database.session() as session:
        now = db_now(session)
        assert isinstance(acquire(session, "shop:poll", "a", TTL, now), LeaseGrant)

    def claim(owner: str, tick: datetime) -> tuple[bool, int]:
        with database.session() as session:
            result = claim_tick(
                session,
                channel_id=channel_id,
                job="poll",
                tick_at=tick,
                interval=SECOND,
                lease="shop:poll",
                owner=owner,
            )
        return result.claimed, result.skipped

    assert claim("b", T0) == (False, 0)  # b does not hold the lease
    assert claim("a", T0) == (True, 0)
    assert claim("a", T0) == (False, 0)  # the same tick again
    assert claim("a", T0 - SECOND) == (False, 0)  # an older one
    assert claim("a", T0 + SECOND) == (True, 0)
    assert claim("a", T0 + 5 * SECOND) == (True, 3)  # ticks 2, 3 and 4 ran nowhere


def _race(databases: list[Database], name: str) -> list[LeaseGrant | LeaseHeld]:
    """Every database (an instance) asks for lease `name` at the same moment."""
    barrier = threading.Barrier(len(databases))
    answers: list[LeaseGrant | LeaseHeld] = []

    def take(db: Database, owner: str) -> None:
        with db.session() as session:
            now = db_now(session)
            barrier.wait(timeout=10)
            answers.append(acquire(session, name, owner, TTL, now))

    threads = [
        threading.Thread(target=take, args=(db, f"instance-{i}")) for i, db in enumerate(databases)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


@pytest.mark.pg
def test_concurrent_takers_of_a_free_lease_get_one_grant(pg_database: Database) -> None:
    """Eight instances (own connections) race for the same free lease, ten times over."""
    databases = [Database(pg_database.url, pool_size=1) for _ in range(8)]
    try:
        for round_ in range(10):
            answers = _race(databases, f"race-{round_}")
            assert len(answers) == len(databases)
            assert len([a for a in answers if isinstance(a, LeaseGrant)]) == 1, answers
    finally:
        for db in databases:
            db.dispose()


def test_a_second_daemon_on_one_sqlite_file_is_refused_with_the_reason(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "store.db"))
    other = Database(sqlite_url(tmp_path / "store.db"))
    try:
        with exclusive_store(db) as path:
            assert path == tmp_path / "store.db.lock"
            with pytest.raises(StoreInUseError) as refused, exclusive_store(other):
                pass
            message = str(refused.value)
            assert str(path) in message and "SQLite" in message and "PostgreSQL" in message
        with exclusive_store(other):  # the first one stopped: the file is free again
            pass
    finally:
        db.dispose()
        other.dispose()


@pytest.mark.pg
def test_postgresql_needs_no_lock_file(pg_database: Database) -> None:
    with exclusive_store(pg_database) as first, exclusive_store(pg_database) as second:
        assert first is None and second is None
