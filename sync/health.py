"""Which channels may be called now: the shared answer for pollers and pushers.

A channel whose credentials were refused is `auth_failed` in its store row, so every instance
stops calling it; each instance keeps a copy in memory (`is_callable`, cheap enough to ask before
every call) that it refreshes from the store at each lease heartbeat. Only the slow re-check
(`check_connection`, run by the poll job's holder) brings a channel back, and every instance
learns of it at its next refresh. Changes of state are logged once, not at every failure.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sync.db import Database
from sync.models import Channel, ChannelState

log = logging.getLogger(__name__)

_ERROR_MAX = 500


class ChannelHealth:
    """Auth failures per channel, in the store and mirrored in memory; safe from any thread."""

    def __init__(self, db: Database, names: Iterable[str] = ()) -> None:
        self.db = db
        self._failed: set[str] = set()
        self._names = set(names)
        self._lock = threading.Lock()
        self._on_recovered: list[Callable[[str], None]] = []

    def on_recovered(self, callback: Callable[[str], None]) -> None:
        """Call `callback(name)` when a channel this instance knew as failed may be called again."""
        self._on_recovered.append(callback)

    def is_callable(self, name: str) -> bool:
        """False while the channel's credentials are refused."""
        with self._lock:
            return name not in self._failed

    def refresh(self, session: Session) -> None:
        """Read every channel's auth state from the store (another instance may have changed it)."""
        failed = set(
            session.scalars(select(Channel.name).where(Channel.state == ChannelState.AUTH_FAILED))
        )
        self._apply(failed)

    def record_auth_failure(self, name: str, error: str) -> None:
        """The channel refused our credentials: stop calling it everywhere until a check passes."""
        self._write_failure(name, error)
        self._mark_failed(name, error)

    def report_auth_failure(self, name: str, error: str) -> None:
        """The same, from the event loop: calls stop at once, the store row is written off it."""
        self._mark_failed(name, error)
        future = asyncio.get_running_loop().run_in_executor(None, self._write_failure, name, error)
        future.add_done_callback(_log_write_failure)

    def _write_failure(self, name: str, error: str) -> None:
        with self.db.session() as session:
            session.execute(
                update(Channel)
                .where(Channel.name == name, Channel.state != ChannelState.DISABLED)
                .values(state=ChannelState.AUTH_FAILED, last_error=error[:_ERROR_MAX])
            )

    def _mark_failed(self, name: str, error: str) -> None:
        with self._lock:
            is_new = name not in self._failed
            self._failed.add(name)
        if is_new:
            log.error(
                "channel %s: credentials refused (%s); calls stop until they work", name, error
            )

    def record_auth_ok(self, name: str) -> None:
        """The connection check passed: the channel may be called again."""
        with self.db.session() as session:
            session.execute(
                update(Channel)
                .where(Channel.name == name, Channel.state == ChannelState.AUTH_FAILED)
                .values(state=ChannelState.OK)
            )
        self._apply(self._snapshot() - {name})

    def _snapshot(self) -> set[str]:
        with self._lock:
            return set(self._failed)

    def _apply(self, failed: set[str]) -> None:
        with self._lock:
            recovered = self._failed - failed
            added = failed - self._failed
            self._failed = failed
        for name in sorted(added & self._names):
            log.warning("channel %s is marked auth-failed in the store; not calling it", name)
        for name in sorted(recovered):
            log.info("channel %s: credentials work again; calls resume", name)
            for callback in self._on_recovered:
                callback(name)


def _log_write_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("could not record an auth failure in the store: %r", exc)
