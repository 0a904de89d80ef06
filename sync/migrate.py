"""Schema migrations of the canonical store: Alembic, configured in code, scripts in `migrations/`.

There is no alembic.ini: `channel-sync migrate` (or `database.auto_migrate = true`) calls
`upgrade`, which hands Alembic one connection inside one transaction. Two instances starting at
once are serialised (PostgreSQL advisory lock, SQLite's write lock), so the second finds the
schema at head and does nothing. `sync.db` re-exports this module's public names.
"""

from __future__ import annotations

import contextlib
import functools
import pathlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from sync.db import Database

__all__ = [
    "HEAD",
    "SchemaOutOfDateError",
    "current_revision",
    "downgrade",
    "ensure_schema",
    "head_revision",
    "upgrade",
]

MIGRATIONS_DIR: Final = pathlib.Path(__file__).resolve().parent / "migrations"

# Arbitrary constant: the PostgreSQL advisory lock that serialises migrating instances.
_PG_MIGRATION_LOCK: Final = 0x63_73_79_6E_63  # "csync"


class SchemaOutOfDateError(Exception):
    """The store's schema is not the one this code needs; migrate before running."""

    def __init__(self, current: str | None, required: str, *, is_known: bool = True) -> None:
        self.current = current
        self.required = required
        at = f"at revision {current}" if current is not None else "empty (no schema yet)"
        if is_known:
            advice = (
                "run `channel-sync migrate --config DIR` or set database.auto_migrate = true "
                "in channel-sync.toml"
            )
        else:
            advice = (
                "that revision is unknown to this version of channel-sync (a newer version "
                "migrated the store); run the newer version, or restore a backup"
            )
        super().__init__(f"the store schema is {at}, but this code needs {required}: {advice}")


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    # ConfigParser interpolation: a literal % in the install path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The revision the code's models correspond to."""
    head = _scripts().get_current_head()
    if head is None:
        raise RuntimeError(f"no migration scripts found in {MIGRATIONS_DIR}")
    return head


HEAD: Final[str] = head_revision()


def current_revision(db: Database) -> str | None:
    """The revision the store is at; None for an empty database."""
    with db.read_session() as session:
        return MigrationContext.configure(session.connection()).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate the store up to `revision`, in one transaction."""
    with _migration_connection(db) as connection:
        command.upgrade(_config(connection), revision)


def downgrade(db: Database, revision: str) -> None:
    """Migrate the store down to `revision` ("base" drops everything), in one transaction."""
    with _migration_connection(db) as connection:
        command.downgrade(_config(connection), revision)


def ensure_schema(db: Database, *, auto_migrate: bool) -> None:
    """Make sure the store is at HEAD: migrate it when allowed, else raise SchemaOutOfDateError."""
    current = current_revision(db)
    if current == HEAD:
        return
    if current is not None and not _is_known(current):
        raise SchemaOutOfDateError(current, HEAD, is_known=False)
    if not auto_migrate:
        raise SchemaOutOfDateError(current, HEAD)
    upgrade(db)


def _is_known(revision: str) -> bool:
    try:
        _scripts().get_revision(revision)
    except CommandError:
        return False
    return True


@contextlib.contextmanager
def _migration_connection(db: Database) -> Iterator[Connection]:
    if db.dialect != "sqlite":
        with db.engine.begin() as connection:
            connection.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
            yield connection
        return
    # SQLite rebuilds a table to alter it (batch mode); with foreign keys enforced, dropping the
    # old copy would cascade or fail. The documented procedure: foreign keys off (only possible
    # outside a transaction), migrate, `PRAGMA foreign_key_check` before commit, keys back on.
    with db.engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        if raw is None:  # pragma: no cover - a fresh checkout always has one
            raise RuntimeError("no DBAPI connection")
        raw.cursor().execute("PRAGMA foreign_keys = OFF")
        try:
            with connection.begin():
                yield connection
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(
                        f"migration left {len(broken)} rows breaking a foreign key "
                        f"(first: table {broken[0][0]}, rowid {broken[0][1]}); rolled back"
                    )
        finally:
            raw.cursor().execute("PRAGMA foreign_keys = ON")
