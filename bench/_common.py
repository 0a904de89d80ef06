"""Helpers the benchmarks share: a fresh store to run against, percentiles, an open-loop sender.

Import as `bench._common` with the repository root on `sys.path` (bench/ is a namespace package).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from sync.db import sqlite_url

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextmanager
def empty_store_url(dialect: str, pg_url: str = DEFAULT_PG_URL) -> Iterator[str]:
    """The URL of a new, empty store (no tables): a SQLite file in a temporary directory, or a
    new PostgreSQL database beside the one `pg_url` names, dropped afterwards."""
    if dialect == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
            yield sqlite_url(Path(tmp) / "channel-sync.db")
        return
    url = make_url(pg_url)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def percentiles(values: Sequence[float], scale: float = 1000.0) -> dict[str, float | int | None]:
    """n, p50, p99 and max of `values` times `scale` (seconds -> ms by default), rounded."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": None, "p99": None, "max": None}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * scale, 2)

    return {"n": len(ordered), "p50": at(0.50), "p99": at(0.99), "max": at(1.0)}


@dataclass(frozen=True)
class Sent:
    """One request of an open-loop run: when it was due, when it started, when it was answered
    (monotonic seconds), and the answer's status (0: no answer, `error` names why)."""

    due: float
    started: float
    answered: float
    status: int
    error: str | None = None


async def open_loop(count: int, rate: float, send: Callable[[int], Awaitable[int]]) -> list[Sent]:
    """Call `send(i)` for i in 0..count-1 at `rate` per second on a fixed schedule, each in its
    own task, whatever the earlier ones are still waiting for (open loop: a slow answer does not
    delay the next request). Answers every request's timing, in order."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    results: list[Sent | None] = [None] * count

    async def one(i: int, due: float) -> None:
        started = time.monotonic()
        try:
            status, error = await send(i), None
        except Exception as exc:  # a transport failure counts as no answer; the run goes on
            status, error = 0, type(exc).__name__
        results[i] = Sent(due, started, time.monotonic(), status, error)

    tasks = []
    for i in range(count):
        due_loop = start + i / rate
        delay = due_loop - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        # `due` on the time.monotonic() clock, so lateness and latency compare like with like.
        due = time.monotonic() - (loop.time() - due_loop)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return [r for r in results if r is not None]
