"""Database fixtures for the whole suite: an empty or a migrated store, on SQLite and PostgreSQL.

PostgreSQL: one database per test run, `channel_sync_test_<pid>_<random>`, created from
`CHANNEL_SYNC_TEST_PG_URL` (default postgresql://postgres@127.0.0.1:5432/postgres) and dropped at
the end. Tests run one after another against it:
- `db_url` empties it first (DROP SCHEMA public CASCADE; about 1-20 ms);
- `database` keeps the migrated schema between tests and deletes the rows (a few ms); it migrates
  afresh (about 150 ms, DDL is slow on PostgreSQL) only when the schema is not exactly the migrated
  one, e.g. after a `db_url` test. A connection a previous test leaked is terminated first.
SQLite: `db_url` is a new file in tmp_path; `database` is a copy of a store migrated once per run.
Unreachable server: PostgreSQL tests skip, or fail when CHANNEL_SYNC_REQUIRE_PG=1.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL

from sync.db import Database, normalize_url, render_url, sqlite_url, upgrade
from sync.models import Base

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.pg),
]

# Everything that shapes the schema; compared before reusing a migrated database for a new test.
_PG_SCHEMA_FINGERPRINT = """
SELECT md5(coalesce(string_agg(item, E'\\n' ORDER BY item), '')) FROM (
    SELECT format('column %s.%s %s %s', table_name, column_name, data_type, is_nullable) AS item
      FROM information_schema.columns WHERE table_schema = 'public'
    UNION ALL
    SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL
    SELECT format('constraint %s %s %s',
                  c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid))
      FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
     WHERE n.nspname = 'public'
    UNION ALL
    SELECT format('revision %s', version_num) FROM alembic_version
) AS schema_items
"""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that ask for PostgreSQL directly carry the `pg` marker too (for `-m "not pg"`)."""
    for item in items:
        uses_pg = "_pg_run" in getattr(item, "fixturenames", ())
        if uses_pg and item.get_closest_marker("pg") is None:
            item.add_marker(pytest.mark.pg)


@dataclass
class _PgRun:
    """The per-run PostgreSQL database and what the last test left in it."""

    url: str
    conninfo: str
    fingerprint_at_head: str | None = None

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)

    def _end_other_sessions(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        # A Database a test forgot to dispose (or a killed daemon's) could hold locks.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )

    def empty(self) -> None:
        """Leave the database without any table, as a fresh one."""
        with self._connect() as conn:
            self._end_other_sessions(conn)
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")

    def migrated(self) -> None:
        """Leave the database at head with no rows: reuse the schema when it is intact."""
        with self._connect() as conn:
            self._end_other_sessions(conn)
            if self.fingerprint_at_head is not None and self._fingerprint(conn) == (
                self.fingerprint_at_head
            ):
                self._delete_rows(conn)
                return
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
        db = Database(self.url)
        try:
            upgrade(db)
        finally:
            db.dispose()
        with self._connect() as conn:
            self.fingerprint_at_head = self._fingerprint(conn)

    @staticmethod
    def _fingerprint(conn: psycopg.Connection[tuple[object, ...]]) -> str | None:
        try:
            row = conn.execute(_PG_SCHEMA_FINGERPRINT).fetchone()
        except psycopg.errors.UndefinedTable:  # no alembic_version: not migrated
            return None
        return None if row is None else str(row[0])

    @staticmethod
    def _delete_rows(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        sequences = [
            row[0]
            for row in conn.execute(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
            )
        ]
        statements = [
            sql.SQL("DELETE FROM {}").format(sql.Identifier(table.name))
            for table in reversed(Base.metadata.sorted_tables)
        ]
        # Ids start from 1 again, as in a fresh database (setval is cheap, unlike ALTER SEQUENCE).
        statements += [
            sql.SQL("SELECT setval({}, 1, false)").format(sql.Literal(f"public.{sequence}"))
            for sequence in sequences
        ]
        with conn.transaction():
            conn.execute(sql.SQL("; ").join(statements))  # one round trip


@pytest.fixture(scope="session")
def _pg_run() -> Iterator[_PgRun]:
    admin_url = os.environ.get("CHANNEL_SYNC_TEST_PG_URL", DEFAULT_PG_URL)
    try:
        admin = _libpq_url(normalize_url(admin_url))
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except (ValueError, psycopg.Error) as exc:
        reason = (
            f"PostgreSQL not reachable at {render_url(admin_url)} ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'}); "
            "set CHANNEL_SYNC_TEST_PG_URL to a server where this user may CREATE DATABASE"
        )
        if os.environ.get("CHANNEL_SYNC_REQUIRE_PG") == "1":
            pytest.fail(f"{reason} (CHANNEL_SYNC_REQUIRE_PG=1, so this is an error)")
        pytest.skip(f"{reason}, or set CHANNEL_SYNC_REQUIRE_PG=1 to fail instead")
    name = f"channel_sync_test_{os.getpid()}_{secrets.token_hex(4)}"
    with conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            run_url = normalize_url(admin_url).set(database=name)
            yield _PgRun(
                url=run_url.render_as_string(hide_password=False), conninfo=_libpq_url(run_url)
            )
        finally:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _libpq_url(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_url(_pg_run: _PgRun) -> str:
    """URL of this run's PostgreSQL database (shared by the run: reset it, or use pg_database)."""
    return _pg_run.url


@pytest.fixture(params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    """Which database a test runs on; `db_url` and `database` are parametrized through it."""
    return str(request.param)


@pytest.fixture
def db_url(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """URL of an EMPTY database (no tables) on each backend."""
    if "database" in request.fixturenames or "pg_database" in request.fixturenames:
        raise pytest.UsageError("use either db_url (empty store) or database (migrated), not both")
    if db_backend == "sqlite":
        return sqlite_url(tmp_path / "channel-sync.db")
    run: _PgRun = request.getfixturevalue("_pg_run")
    run.empty()
    return run.url


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "channel-sync.db"
    db = Database(sqlite_url(path))
    try:
        upgrade(db)
    finally:
        db.dispose()  # the last connection to close checkpoints the WAL into the file
    return path


@pytest.fixture
def database(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    """A store migrated to head, with no rows, on each backend."""
    if db_backend == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        path = tmp_path / "channel-sync.db"
        for suffix in ("", "-wal"):
            if Path(f"{template}{suffix}").exists():
                shutil.copyfile(f"{template}{suffix}", f"{path}{suffix}")
        url = sqlite_url(path)
    else:
        run: _PgRun = request.getfixturevalue("_pg_run")
        run.migrated()
        url = run.url
    db = Database(url)
    yield db
    db.dispose()


@pytest.fixture
def pg_database(_pg_run: _PgRun) -> Iterator[Database]:
    """A store migrated to head, with no rows, on PostgreSQL only."""
    _pg_run.migrated()
    db = Database(_pg_run.url)
    yield db
    db.dispose()
