"""SQLite writers of one process take turns at the write gate, the webhook commit first (sync/db.py
`_WriteGate`; issue 9 §3): a delivery waiting for its 200 is not queued behind the engine's
background writers, however many are waiting."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.db import Database
from sync.models import Sku
from tests.support.daemon import wait_for


@pytest.fixture
def db_backend() -> str:
    """The gate is SQLite's: PostgreSQL has row locks and no file lock to poll."""
    return "sqlite"


def test_a_priority_writer_goes_before_writers_that_waited_longer(database: Database) -> None:
    assert database._gate is not None
    gate = database._gate
    holding, release = threading.Event(), threading.Event()
    order: list[str] = []

    def hold() -> None:
        with database.session():
            holding.set()
            release.wait(30)

    def write(name: str, *, priority: bool) -> None:
        def add(session: Session) -> None:
            order.append(name)
            session.add(Sku(sku=name))

        database.transact(add, priority=priority)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    background = [
        threading.Thread(target=write, args=(f"BG-{i}",), kwargs={"priority": False})
        for i in range(3)
    ]
    for i, thread in enumerate(background, start=1):
        thread.start()
        wait_for(lambda i=i: gate.waiting == i, timeout=10, what=f"{i} background writers waiting")
    urgent = threading.Thread(target=write, args=("URGENT",), kwargs={"priority": True})
    urgent.start()
    wait_for(lambda: gate.waiting == 4, timeout=10, what="the priority writer waiting")
    release.set()
    for thread in (holder, urgent, *background):
        thread.join(30)
    assert order[0] == "URGENT", order
    assert sorted(order[1:]) == ["BG-0", "BG-1", "BG-2"]
    with database.read_session() as session:
        assert len(session.scalars(select(Sku.sku)).all()) == 4


def test_a_nested_write_session_on_one_thread_does_not_wait_for_itself(database: Database) -> None:
    """The gate lets a thread already writing through to SQLite (which then decides, as before
    the gate: here its busy timeout refuses the second BEGIN IMMEDIATE)."""
    slow = Database(database.url, busy_timeout=0.2)
    try:
        with slow.session(), pytest.raises(Exception, match="locked"), slow.session():
            pass
    finally:
        slow.dispose()
