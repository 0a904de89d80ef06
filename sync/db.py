"""Engine and transactions for the canonical store, on SQLite (default) or PostgreSQL.

Writers take one transaction each through `Database.session` or, when a concurrent writer may
force a retry, `Database.transact`. On SQLite a write transaction starts with `BEGIN IMMEDIATE`,
so writers queue on the file lock (up to `busy_timeout`) instead of failing when a read
transaction tries to become a write one; readers use a deferred `BEGIN` and, under WAL, never wait.
Schema migrations live in `sync.migrate` and are re-exported here.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError, InvalidRequestError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random

from sync.migrate import (
    HEAD,
    SchemaOutOfDateError,
    current_revision,
    ensure_schema,
    head_revision,
    upgrade,
)

__all__ = [
    "HEAD",
    "Database",
    "SchemaOutOfDateError",
    "current_revision",
    "ensure_schema",
    "head_revision",
    "normalize_url",
    "render_url",
    "sqlite_url",
    "upgrade",
]

_log = logging.getLogger(__name__)

T = TypeVar("T")

_ACCEPTED = (
    "accepted: postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME (also postgres:// or "
    "postgresql+psycopg://; driver psycopg 3) or sqlite:////absolute/path/to/store.db"
)
_POSTGRES_SCHEMES = frozenset({"postgresql", "postgres", "postgresql+psycopg"})
_SQLITE_SCHEMES = frozenset({"sqlite", "sqlite+pysqlite"})
_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})

# Execution option read by the "begin" hook: how a SQLite transaction takes the file lock.
_SQLITE_BEGIN = "channel_sync_sqlite_begin"
_SQLITE_BEGIN_MODES = frozenset({"IMMEDIATE", "DEFERRED", "EXCLUSIVE"})

# SQLSTATEs after which PostgreSQL asks the client to run the whole transaction again.
_PG_RETRY_SQLSTATES = frozenset({"40001", "40P01"})
_SQLITE_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def normalize_url(url: str) -> URL:
    """Parse a configured database URL into the one driver per database that the store supports.

    Raises ValueError naming what is wrong and what is accepted; the password is never echoed.
    """
    try:
        parsed = make_url(url)
    except Exception:  # make_url raises ArgumentError, ValueError or worse on garbage
        raise ValueError(f"database url could not be parsed; {_ACCEPTED}") from None
    scheme = parsed.drivername.lower()
    if scheme in _POSTGRES_SCHEMES:
        return parsed.set(drivername="postgresql+psycopg")
    if scheme in _SQLITE_SCHEMES:
        database = parsed.database or ""
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            raise ValueError(
                "database url names an in-memory SQLite database, which would lose every order "
                f"when the process stops; give a file path. {_ACCEPTED}"
            )
        return parsed.set(drivername="sqlite+pysqlite")
    if scheme.startswith(("postgresql+", "postgres+")):
        problem = f"database url asks for PostgreSQL driver {scheme!r}, which is not installed here"
    elif scheme.startswith("sqlite+"):
        problem = f"database url asks for SQLite driver {scheme!r}, which is not supported"
    else:
        problem = f"database url is for {scheme!r}, which is not a supported database"
    raise ValueError(f"{problem}; {_ACCEPTED}")


def sqlite_url(path: pathlib.Path) -> str:
    """The URL of a SQLite store file, absolute: "sqlite:////abs/path.db"."""
    absolute = path.expanduser().resolve()
    return URL.create("sqlite", database=str(absolute)).render_as_string(hide_password=False)


def render_url(url: str) -> str:
    """The URL as it may be shown in logs and status pages: any password is replaced by ***."""
    try:
        parsed = make_url(url)
    except Exception:
        return "<unparsable database url>"
    masked = {
        key: ("***" if key.lower() in _SECRET_QUERY_KEYS else value)
        for key, value in parsed.query.items()
    }
    return parsed.set(query=masked).render_as_string(hide_password=True)


class _WriteGate:
    """SQLite only: this process's write transactions take turns here before `BEGIN IMMEDIATE`,
    deliveries waiting for their 200 (`priority`) first.

    SQLite's own busy handler polls the file lock with growing sleeps (up to 100 ms each), so
    with several writers in one process a waiting writer often sleeps through the moment the
    lock is free, and the webhook group commit queued behind the pusher, the inbox worker and
    the rest: at 100 deliveries/s p99 time-to-200 went from ~3-4 s to ~0.6-0.9 s with the gate
    (bench/webhooks.py, the issue 9 report). The file lock still guards against other processes.
    A thread already in a write transaction, or one that waited `timeout` s, goes on to SQLite's
    own locking, as before the gate.
    """

    def __init__(self, timeout: float) -> None:
        self._cond = threading.Condition()
        self._holder: int | None = None
        self._urgent = 0  # priority writers waiting
        self._timeout = timeout
        self.waiting = 0  # writers waiting for their turn (read by tests)

    @contextlib.contextmanager
    def turn(self, *, priority: bool) -> Iterator[None]:
        me = threading.get_ident()
        if self._holder == me:  # nested: SQLite decides, as without the gate
            yield
            return
        deadline = time.monotonic() + self._timeout
        with self._cond:
            self._urgent += priority
            self.waiting += 1
            try:
                while self._holder is not None or (not priority and self._urgent):
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._cond.wait(left):
                        break
                else:
                    self._holder = me
            finally:
                self._urgent -= priority
                self.waiting -= 1
            held = self._holder == me
        try:
            yield
        finally:
            if held:
                with self._cond:
                    self._holder = None
                    self._cond.notify_all()


class Database:
    """Engine + sessions for the canonical store."""

    def __init__(self, url: str, *, pool_size: int = 5, busy_timeout: float = 30.0) -> None:
        parsed = normalize_url(url)
        self.url: str = parsed.render_as_string(hide_password=False)
        self.dialect: str = parsed.get_backend_name()
        if self.dialect == "sqlite":
            self.engine: sqlalchemy.Engine = _sqlite_engine(parsed, pool_size, busy_timeout)
            read_engine = self.engine.execution_options(**{_SQLITE_BEGIN: "DEFERRED"})
        else:
            self.engine = sqlalchemy.create_engine(parsed, pool_size=pool_size, pool_pre_ping=True)
            # One snapshot for the whole read, as SQLite's deferred BEGIN gives under WAL;
            # a read-only transaction never fails to serialize, so it needs no retry.
            read_engine = self.engine.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        self._gate = _WriteGate(busy_timeout) if self.dialect == "sqlite" else None
        self._write_sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(read_engine, expire_on_commit=False)
        event.listen(self._read_sessions, "before_flush", _refuse_flush)

    def __repr__(self) -> str:
        return f"Database({render_url(self.url)!r})"

    @contextlib.contextmanager
    def session(self, *, priority: bool = False) -> Iterator[Session]:
        """One write transaction: committed when the block ends, rolled back if it raises.

        `priority`: on SQLite, go before this process's other waiting writers (`_WriteGate`).
        """
        with contextlib.ExitStack() as stack:
            if self._gate is not None:
                stack.enter_context(self._gate.turn(priority=priority))
            session = stack.enter_context(self._write_sessions())
            stack.enter_context(session.begin())
            # Take the write lock now (BEGIN IMMEDIATE on SQLite), not at the first statement.
            session.connection()
            yield session

    def ping(self) -> None:
        """One round trip to the store (a new connection if the pool holds none)."""
        with self.engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))

    @contextlib.contextmanager
    def read_session(self) -> Iterator[Session]:
        """One read-only snapshot; never commits. On SQLite a deferred BEGIN: it never waits.

        PostgreSQL refuses writes in it (READ ONLY); on SQLite a raw write is rolled back at the
        end, and on both the ORM refuses to flush.
        """
        with self._read_sessions() as session:
            yield session

    def transact(
        self, fn: Callable[[Session], T], *, attempts: int = 8, priority: bool = False
    ) -> T:
        """Run fn in a write transaction, running it again whole if the database asks to retry.

        Retried: PostgreSQL serialization failures and deadlocks (SQLSTATE 40001, 40P01) and
        SQLite "database is locked". fn must therefore have no effect outside its session.
        """
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        for attempt in range(1, attempts + 1):
            try:
                with self.session(priority=priority) as session:
                    return fn(session)
            except DBAPIError as exc:
                if attempt == attempts or not _is_retryable(exc):
                    raise
                delay = random.uniform(0, min(0.5, 0.01 * 2**attempt))
                _log.debug(
                    "transaction attempt %d/%d hit a transient conflict (%s); retrying in %.3fs",
                    attempt,
                    attempts,
                    type(exc.orig).__name__,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def dispose(self) -> None:
        """Close every pooled connection (call before the process exits or forks)."""
        self.engine.dispose()


def _sqlite_engine(url: URL, pool_size: int, busy_timeout: float) -> sqlalchemy.Engine:
    if url.database and not url.database.startswith("file:"):
        pathlib.Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sqlalchemy.create_engine(
        url,
        pool_size=pool_size,
        connect_args={"timeout": busy_timeout, "check_same_thread": False},
    )
    busy_ms = int(busy_timeout * 1000)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # pysqlite would otherwise BEGIN on its own, late and always deferred; we emit BEGIN
        # ourselves in the "begin" hook (the recipe in SQLAlchemy's pysqlite documentation).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            mode = _enter_wal(cursor, busy_timeout)
            if str(mode).lower() != "wal":
                raise RuntimeError(
                    f"SQLite refused WAL journal mode (got {mode!r}); put the store file on a "
                    "local filesystem"
                )
            # Webhooks are acknowledged after commit, so a commit must survive power loss.
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_SQLITE_BEGIN, "IMMEDIATE")
        if mode not in _SQLITE_BEGIN_MODES:
            raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _enter_wal(cursor: sqlite3.Cursor, busy_timeout: float) -> str:
    """`PRAGMA journal_mode = WAL`; the journal mode the file is in after it.

    Turning a file into WAL takes the exclusive lock without SQLite's busy handler: when two
    instances open a new store at once, one of them gets "database is locked" at once (about 1
    time in 50 with two). That is retried, with short random pauses, for up to `busy_timeout`.
    """
    retrying = Retrying(
        retry=retry_if_exception(_is_locked),
        stop=stop_after_delay(busy_timeout),
        wait=wait_random(0.001, 0.05),
        before_sleep=lambda state: _log.debug(
            "another connection is turning the store file into WAL; trying again (%d)",
            state.attempt_number,
        ),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            cursor.execute("PRAGMA journal_mode = WAL")
            return str(cursor.fetchone()[0])
    raise AssertionError("unreachable")  # pragma: no cover


def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "database is locked" in str(exc)


def _refuse_flush(session: Session, _context: Any, _instances: Any) -> None:
    raise InvalidRequestError(
        "read_session() is read-only: write through Database.session() or Database.transact()"
    )


def _is_retryable(exc: DBAPIError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _PG_RETRY_SQLSTATES:
        return True
    if isinstance(orig, sqlite3.OperationalError):
        code = getattr(orig, "sqlite_errorcode", None)
        if code is not None:
            return (code & 0xFF) in _SQLITE_BUSY_CODES
        return "database is locked" in str(orig)
    return False
