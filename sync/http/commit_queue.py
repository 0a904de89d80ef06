"""Group commit for webhook deliveries: many verified deliveries, one transaction, one fsync.

Each delivery committed alone costs one fsync on SQLite (`synchronous=FULL`) and a thread hop;
at a few hundred deliveries a second that, not the work, is the limit. Here one writer thread
drains a queue: the deliveries that arrive while a commit is in progress are recorded together in
the next transaction. Each request awaits its own future, which is answered only after the commit
that holds its delivery (durable before visible, DESIGN.md invariant 2); when the transaction
fails, every request in it gets the error and none of its rows is stored.

The writer thread starts when a delivery arrives and no writer runs, and ends when the queue is
empty, so there is nothing to stop and the queue serves any event loop (tests run one per call).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from sync.db import Database
from sync.inbox import NewDelivery, record_deliveries

log = logging.getLogger(__name__)

MAX_GROUP = 500  # bounds one transaction's time and memory under a burst


@dataclass(frozen=True)
class _Pending:
    channel_id: int
    delivery_id: str
    topic: str
    body: bytes
    future: concurrent.futures.Future[bool] = field(default_factory=concurrent.futures.Future)


class CommitQueue:
    """Records verified deliveries in the inbox, several per transaction."""

    def __init__(self, db: Database, *, max_group: int = MAX_GROUP) -> None:
        if max_group < 1:
            raise ValueError("max_group must be at least 1")
        self._db = db
        self._max_group = max_group
        self._lock = threading.Lock()  # guards _queue and _is_writing
        self._queue: list[_Pending] = []
        self._is_writing = False

    @property
    def waiting(self) -> int:
        """Deliveries queued for the next transaction (not the one being committed)."""
        with self._lock:
            return len(self._queue)

    async def record(self, *, channel_id: int, delivery_id: str, topic: str, body: bytes) -> bool:
        """Store a delivery once committed; True if new, False if its delivery id was stored.

        Raises what the transaction raised when the group holding this delivery failed.
        """
        if not delivery_id:
            # Refused here, not in the group, so one bad delivery cannot fail the others.
            raise ValueError("a delivery needs the channel's delivery id to be deduplicated")
        item = _Pending(channel_id, delivery_id, topic, body)
        with self._lock:
            self._queue.append(item)
            is_starting = not self._is_writing
            self._is_writing = True
        if is_starting:
            threading.Thread(target=self._drain, name="inbox-commit", daemon=True).start()
        return await asyncio.wrap_future(item.future)

    def _drain(self) -> None:
        while True:
            with self._lock:
                group = self._queue[: self._max_group]
                del self._queue[: self._max_group]
                if not group:
                    self._is_writing = False
                    return
            # A request that went away (its future cancelled) is not stored: nobody was answered.
            live = [item for item in group if item.future.set_running_or_notify_cancel()]
            if live:
                self._commit(live)

    def _commit(self, group: list[_Pending]) -> None:
        # Inserted in key order, so two instances on PostgreSQL with overlapping groups take the
        # row locks in the same order and never deadlock on each other.
        ordered = sorted(group, key=lambda item: (item.channel_id, item.delivery_id))

        def insert_all(session: Session) -> list[bool]:
            # A delivery id twice in one group: the first row stores it, the second finds it.
            return record_deliveries(
                session,
                [
                    NewDelivery(item.channel_id, item.delivery_id, item.topic, item.body)
                    for item in ordered
                ],
            )

        try:
            # Ahead of the engine's other writers: these requests wait for their answer.
            stored = self._db.transact(insert_all, priority=True)
        except Exception as exc:  # every waiting request must hear of it, whatever it is
            log.error(
                "webhook inbox: a group of %d deliveries was not committed (%s)",
                len(group),
                type(exc).__name__,
            )
            for item in group:
                item.future.set_exception(exc)
            return
        for item, is_new in zip(ordered, stored, strict=True):
            item.future.set_result(is_new)
