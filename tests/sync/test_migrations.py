"""Migrations: an empty store reaches head, matches the models exactly, and goes back down."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import DBAPIError

from sync.db import (
    HEAD,
    Database,
    SchemaOutOfDateError,
    current_revision,
    ensure_schema,
    head_revision,
    upgrade,
)
from sync.migrate import MIGRATIONS_DIR, _config, downgrade
from sync.models import Base, Sku

MODEL_TABLES = set(Base.metadata.tables)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


def table_names(db: Database) -> set[str]:
    with db.read_session() as session:
        return set(inspect(session.connection()).get_table_names())


def schema_drift(db: Database) -> list[Any]:
    with db.read_session() as session:
        context = MigrationContext.configure(
            session.connection(), opts={"compare_type": True, "target_metadata": Base.metadata}
        )
        return list(compare_metadata(context, Base.metadata))


def _normalized(sql: str) -> str:
    # PostgreSQL prints expressions back with casts and parentheses; SQLite as written.
    return re.sub(r"[\s()]+|::text", "", sql).lower()


def schema_shape(connection: Connection, schema: str | None = None) -> dict[str, Any]:
    """What autogenerate does not compare: CHECKs, index predicates, FK actions, names."""
    inspector = inspect(connection)
    shape: dict[str, Any] = {}
    for table in sorted(MODEL_TABLES):
        indexes = inspector.get_indexes(table, schema=schema)
        shape[table] = {
            "pk": inspector.get_pk_constraint(table, schema=schema),
            "checks": sorted(
                (check["name"], _normalized(check["sqltext"]))
                for check in inspector.get_check_constraints(table, schema=schema)
            ),
            "uniques": sorted(
                (unique["name"], tuple(unique["column_names"]))
                for unique in inspector.get_unique_constraints(table, schema=schema)
            ),
            "indexes": sorted(
                (
                    index["name"],
                    tuple(str(column) for column in index["column_names"]),
                    index["unique"],
                    _normalized(
                        str(
                            index.get("dialect_options", {}).get(
                                f"{connection.dialect.name}_where", ""
                            )
                        )
                    ),
                )
                for index in indexes
            ),
            "foreign_keys": sorted(
                (
                    fk["name"] or "",
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    str(fk.get("options", {}).get("ondelete")),
                )
                for fk in inspector.get_foreign_keys(table, schema=schema)
            ),
        }
    return shape


@contextmanager
def models_created_directly(db: Database) -> Iterator[tuple[Connection, str]]:
    """The schema as `Base.metadata.create_all` makes it, beside the migrated one; then dropped."""
    with db.engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert raw is not None
        if db.dialect == "sqlite":
            # ATTACH is refused inside a transaction: run it on the raw (autocommit) connection.
            raw.cursor().execute("ATTACH DATABASE ':memory:' AS reference")
        transaction = connection.begin()
        try:
            if db.dialect == "postgresql":
                connection.exec_driver_sql("CREATE SCHEMA reference")
            Base.metadata.create_all(
                connection.execution_options(schema_translate_map={None: "reference"})
            )
            yield connection, "reference"
        finally:
            transaction.rollback()
            if db.dialect == "sqlite":
                raw.cursor().execute("DETACH DATABASE reference")


def test_head_is_the_single_head_of_the_scripts() -> None:
    scripts = ScriptDirectory.from_config(_config())
    assert scripts.get_heads() == [HEAD]
    assert head_revision() == HEAD
    assert (MIGRATIONS_DIR / "env.py").is_file()


def test_upgrade_takes_an_empty_store_to_head(db: Database) -> None:
    assert table_names(db) == set()
    assert current_revision(db) is None
    upgrade(db)
    assert current_revision(db) == HEAD
    assert table_names(db) == MODEL_TABLES | {"alembic_version"}
    upgrade(db)  # at head already: nothing to do
    assert current_revision(db) == HEAD


def test_models_match_the_migrated_schema(db: Database) -> None:
    upgrade(db)
    assert schema_drift(db) == []


def test_migration_creates_the_constraints_the_models_declare(db: Database) -> None:
    upgrade(db)
    with db.read_session() as session:
        migrated = schema_shape(session.connection())
    with models_created_directly(db) as (connection, schema):
        direct = schema_shape(connection, schema)
    assert migrated == direct
    # Spot checks, in case both sides lost the same thing.
    outbox = migrated["outbox_jobs"]
    assert ("uq_outbox_jobs_pending_identity", ("identity_key",), True, "state='pending'") in (
        outbox["indexes"]
    )
    assert [name for name, _ in outbox["checks"]] == [
        "ck_outbox_jobs_job_kind",
        "ck_outbox_jobs_job_state",
    ]
    assert migrated["order_lines"]["pk"]["name"] == "pk_order_lines"


def test_downgrade_to_base_then_upgrade_again(db: Database) -> None:
    upgrade(db)
    with db.session() as session:
        session.add(Sku(sku="MUG"))  # a row in the way of dropping the table
    downgrade(db, "base")
    assert current_revision(db) is None
    assert table_names(db) <= {"alembic_version"}
    upgrade(db)
    assert current_revision(db) == HEAD
    assert schema_drift(db) == []


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_sqlite_migration_restores_foreign_key_enforcement(db: Database) -> None:
    # Foreign keys are off while migrating SQLite; the pooled connection must get them back.
    upgrade(db)
    downgrade(db, "base")
    upgrade(db)
    with db.read_session() as session:
        assert session.execute(text("PRAGMA foreign_keys")).scalar_one() == 1


def test_two_instances_migrating_at_once_both_succeed(db_url: str) -> None:
    instances = [Database(db_url), Database(db_url)]
    start = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []

    def migrate(instance: Database) -> None:
        try:
            start.wait()
            ensure_schema(instance, auto_migrate=True)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(instance,)) for instance in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert [current_revision(instance) for instance in instances] == [HEAD, HEAD]
    for instance in instances:
        instance.dispose()


def test_ensure_schema_refuses_an_empty_store(db: Database) -> None:
    with pytest.raises(SchemaOutOfDateError) as refused:
        ensure_schema(db, auto_migrate=False)
    message = str(refused.value)
    assert "empty" in message and HEAD in message
    assert "channel-sync migrate --config DIR" in message
    assert "database.auto_migrate = true" in message
    assert refused.value.current is None and refused.value.required == HEAD
    assert table_names(db) == set()  # and touched nothing


def test_ensure_schema_refuses_an_outdated_store(db: Database) -> None:
    upgrade(db, "0001")  # a store an older release left behind
    with pytest.raises(SchemaOutOfDateError) as refused:
        ensure_schema(db, auto_migrate=False)
    message = str(refused.value)
    assert "at revision 0001" in message and f"needs {HEAD}" in message
    assert "channel-sync migrate --config DIR" in message
    assert current_revision(db) == "0001"  # and touched nothing


def test_ensure_schema_refuses_a_store_from_a_newer_version(db: Database) -> None:
    upgrade(db)
    with db.session() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    for auto_migrate in (False, True):
        with pytest.raises(SchemaOutOfDateError, match="unknown to this version"):
            ensure_schema(db, auto_migrate=auto_migrate)


def test_ensure_schema_migrates_when_allowed(db: Database) -> None:
    ensure_schema(db, auto_migrate=True)
    assert current_revision(db) == HEAD
    ensure_schema(db, auto_migrate=False)  # at head: nothing to say
    assert schema_drift(db) == []


def test_a_failed_migration_leaves_nothing_behind(db: Database) -> None:
    with db.session() as session:
        session.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY)"))
    with pytest.raises(DBAPIError, match="orders"):
        upgrade(db)
    assert current_revision(db) is None
    assert table_names(db) == {"orders"}  # the tables created before the clash were rolled back
