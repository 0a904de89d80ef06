"""Waiting for the store at start.

At boot, or after PostgreSQL crashed, the server refuses connections or answers "the database
system is starting up / in recovery mode" for a while. The daemon waits for it, saying so in the
log and to systemd, up to `start_wait_s`; then it exits with EXIT_STORE_UNREACHABLE and a line
that names the server's refusal (never the URL: it may hold a password), for systemd's Restart=
to try again. A SQLite file is not waited for: what stops it opening does not pass by itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sqlalchemy.exc import OperationalError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from sync.db import Database

log = logging.getLogger(__name__)

EXIT_STORE_UNREACHABLE = 5


class StoreUnreachableError(Exception):
    """The store did not answer within the wait; the message names the last refusal."""


def refusal(exc: OperationalError) -> str:
    """The server's own words (the driver's first line), without the statement or the URL."""
    words = str(exc.orig).strip().splitlines() if exc.orig is not None else []
    return words[0][:300] if words else type(exc).__name__


async def wait_for_store(
    db: Database,
    *,
    limit_s: float,
    stop: asyncio.Event,
    on_wait: Callable[[str], None] = lambda _status: None,
) -> None:
    """Return once the store answers a query; StoreUnreachableError after `limit_s`, or as soon
    as `stop` is set. `on_wait` gets a status line before each pause (for systemd's STATUS=)."""
    if db.engine.dialect.name != "postgresql":
        await asyncio.to_thread(db.ping)
        return
    deadline = time.monotonic() + limit_s

    def give_up(_state: RetryCallState) -> bool:
        return stop.is_set() or time.monotonic() >= deadline

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        why = refusal(exc) if isinstance(exc, OperationalError) else "no answer"
        status = f"waiting for the store ({why})"
        if state.attempt_number == 1:
            log.warning("%s; trying again for up to %.0f s", status, limit_s)
        on_wait(status)

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(OperationalError),
        stop=give_up,
        wait=wait_exponential(multiplier=0.25, max=2.0),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                await asyncio.to_thread(db.ping)
    except OperationalError as exc:
        raise StoreUnreachableError(refusal(exc)) from None
