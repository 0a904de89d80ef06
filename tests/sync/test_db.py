"""The store layer: URLs, SQLite settings, transactions, retries, and exact money and times."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InvalidRequestError,
    OperationalError,
    StatementError,
)
from sqlalchemy.orm import Session

from connectors.base import OrderStatus
from sync.db import Database, normalize_url, render_url, sqlite_url, upgrade
from sync.models import Channel, JobKind, JobState, Order, OutboxJob, Sku, StockLevel

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def add_channel(session: Session, name: str = "shopify-main") -> Channel:
    channel = Channel(name=name, kind="shopify")
    session.add(channel)
    session.flush()
    return channel


def add_order(session: Session, channel: Channel, external_id: str, **values: object) -> Order:
    order = Order(
        channel_id=channel.id,
        external_id=external_id,
        status=OrderStatus.OPEN,
        currency="EUR",
        channel_updated_at=T0,
        **values,
    )
    session.add(order)
    session.flush()
    return order


def add_stock(db: Database, on_hand: int) -> None:
    with db.session() as session:
        session.add(Sku(sku="MUG"))
        session.flush()
        session.add(StockLevel(sku="MUG", location="main", on_hand=on_hand))


def on_hand(db: Database) -> int:
    with db.read_session() as session:
        return session.scalars(select(StockLevel.on_hand).where(StockLevel.sku == "MUG")).one()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database(sqlite_url(tmp_path / "store.db"))
    upgrade(db)
    yield db
    db.dispose()


# --- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u:pw@db.example:5433/shop", "postgresql+psycopg"),
        ("postgres://u:pw@db.example/shop", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db.example/shop?sslmode=require", "postgresql+psycopg"),
        ("sqlite:////var/lib/channel-sync/channel-sync.db", "sqlite+pysqlite"),
        ("sqlite:///relative/channel-sync.db", "sqlite+pysqlite"),
    ],
)
def test_normalize_url_accepts_the_supported_drivers(url: str, driver: str) -> None:
    normalized = normalize_url(url)
    given = make_url(url)
    assert normalized.drivername == driver
    assert normalized == given.set(drivername=driver)  # host, database, password, query kept


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("mysql://u:s3cret-pw@db/shop", "'mysql'"),
        ("postgresql+psycopg2://u:s3cret-pw@db/shop", "'postgresql+psycopg2'"),
        ("postgresql+asyncpg://u:s3cret-pw@db/shop", "'postgresql+asyncpg'"),
        ("sqlite+aiosqlite:////tmp/x.db", "'sqlite+aiosqlite'"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite:///file:store?mode=memory&uri=true", "in-memory"),
        ("not a url s3cret-pw", "could not be parsed"),
        ("", "could not be parsed"),
        ("postgresql://u:s3cret-pw@[::1/db", "could not be parsed"),
    ],
)
def test_normalize_url_refuses_the_rest_without_echoing_the_password(
    url: str, complaint: str
) -> None:
    with pytest.raises(ValueError, match="accepted") as refused:
        normalize_url(url)
    message = str(refused.value)
    assert complaint in message
    assert "postgresql://" in message and "sqlite:////" in message  # says what is accepted
    assert "s3cret-pw" not in message


def test_render_url_masks_passwords() -> None:
    shown = render_url("postgresql://shop:s3cret-pw@db/shop?sslpassword=k3y-pw&sslmode=require")
    assert "s3cret-pw" not in shown and "k3y-pw" not in shown
    assert shown.startswith("postgresql://shop:***@db/shop?")
    assert "sslmode=require" in shown
    assert render_url("not a url s3cret-pw") == "<unparsable database url>"
    assert render_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_sqlite_url_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert (
        sqlite_url(Path("state/channel-sync.db")) == f"sqlite:///{tmp_path}/state/channel-sync.db"
    )
    assert normalize_url(sqlite_url(Path("a b#c?.db"))).database == f"{tmp_path}/a b#c?.db"


def test_database_repr_hides_the_password() -> None:
    db = Database("postgresql://shop:s3cret-pw@127.0.0.1:1/shop")  # never connects
    assert "s3cret-pw" not in repr(db)
    assert db.dialect == "postgresql"
    assert db.url.startswith("postgresql+psycopg://")
    db.dispose()


# --- SQLite settings ------------------------------------------------------------------------


def test_sqlite_pragmas_are_set_on_every_connection(sqlite_db: Database) -> None:
    # Two connections at once, so the second is a fresh one from the pool.
    with sqlite_db.read_session() as first, sqlite_db.read_session() as second:
        for session in (first, second):
            pragma = {
                name: session.execute(text(f"PRAGMA {name}")).scalar_one()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
            assert pragma == {
                "journal_mode": "wal",
                "synchronous": 2,  # FULL
                "foreign_keys": 1,
                "busy_timeout": 30_000,
            }
        assert first.connection().connection.dbapi_connection is not (
            second.connection().connection.dbapi_connection
        )


def test_sqlite_enforces_foreign_keys(sqlite_db: Database) -> None:
    with pytest.raises(IntegrityError, match="FOREIGN KEY"), sqlite_db.session() as session:
        session.add(StockLevel(sku="NO-SUCH-SKU", location="main", on_hand=1))


def test_sqlite_creates_the_parent_directory(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "state" / "deeper" / "store.db"))
    upgrade(db)
    assert (tmp_path / "state" / "deeper" / "store.db").is_file()
    db.dispose()


def test_sqlite_readers_do_not_wait_for_the_writer(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "store.db"), busy_timeout=5)
    upgrade(db)
    add_stock(db, on_hand=3)
    with db.session() as writer:  # holds the write lock (BEGIN IMMEDIATE) until the block ends
        writer.execute(update(StockLevel).values(on_hand=2))
        writer.flush()
        # Under WAL a deferred reader reads the last committed state without waiting.
        assert on_hand(db) == 3
    assert on_hand(db) == 2
    db.dispose()


def test_two_sqlite_writers_in_threads_are_serialised(sqlite_db: Database) -> None:
    add_stock(sqlite_db, on_hand=0)
    rounds = 40
    start = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            start.wait()
            for _ in range(rounds):
                # Read, then write: with a deferred BEGIN two of these would deadlock on the
                # lock upgrade and one would fail with "database is locked".
                with sqlite_db.session() as session:
                    current = session.scalars(select(StockLevel.on_hand)).one()
                    session.execute(update(StockLevel).values(on_hand=current + 1))
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert on_hand(sqlite_db) == 2 * rounds  # no update lost


def test_instances_opening_a_new_sqlite_store_at_once_all_connect(tmp_path: Path) -> None:
    # Turning a new file into WAL takes the exclusive lock without SQLite's busy handler: the
    # instance that lost the race used to fail at once with "database is locked" (about 1 in 50
    # pairs). Many fresh files, several instances each, so a regression fails nearly every run.
    errors: list[BaseException] = []
    for store in range(40):
        url = sqlite_url(tmp_path / f"store-{store}.db")
        instances = [Database(url, busy_timeout=10) for _ in range(4)]
        start = threading.Barrier(len(instances), timeout=10)

        def open_store(instance: Database, start: threading.Barrier = start) -> None:
            try:
                start.wait()
                instance.ping()
            except BaseException as exc:  # reported in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=open_store, args=(db,)) for db in instances]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        for instance in instances:
            with instance.read_session() as session:
                assert session.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            instance.dispose()
    assert errors == []


# --- transactions (both databases) ----------------------------------------------------------


def test_session_commits_on_success_and_rolls_back_on_exception(database: Database) -> None:
    with database.session() as session:
        add_channel(session, "kept")

    with pytest.raises(RuntimeError, match="boom"), database.session() as session:
        add_channel(session, "half-written")
        session.add(Sku(sku="MUG"))
        session.flush()
        raise RuntimeError("boom")

    with pytest.raises(IntegrityError), database.session() as session:
        add_channel(session, "also-lost")
        add_channel(session, "kept")  # unique name: the whole transaction goes

    with database.read_session() as session:
        assert session.scalars(select(Channel.name)).all() == ["kept"]
        assert session.scalars(select(Sku)).all() == []


def test_objects_stay_readable_after_commit(database: Database) -> None:
    with database.session() as session:
        channel = add_channel(session)
    assert channel.name == "shopify-main"  # expire_on_commit=False: no reload, no error
    assert channel.created_at.tzinfo is UTC


def test_read_session_refuses_writes(database: Database) -> None:
    with pytest.raises(InvalidRequestError, match="read-only"), database.read_session() as session:
        session.add(Sku(sku="MUG"))
        session.flush()
    with database.read_session() as session:
        assert session.scalars(select(Sku)).all() == []


def test_read_session_never_keeps_a_raw_write(database: Database) -> None:
    insert = text("INSERT INTO skus (sku, is_bundle, created_at) VALUES ('MUG', false, :at)")
    with database.read_session() as session:
        if database.dialect == "postgresql":
            with pytest.raises(DBAPIError, match="read-only transaction"):
                session.execute(insert, {"at": T0})
        else:
            session.execute(insert, {"at": T0.replace(tzinfo=None)})
    with database.read_session() as session:
        assert session.scalars(select(Sku)).all() == []


def test_read_session_reads_one_snapshot(database: Database) -> None:
    add_stock(database, on_hand=3)
    with database.read_session() as reader:
        assert reader.scalars(select(StockLevel.on_hand)).one() == 3
        with database.session() as writer:
            writer.execute(update(StockLevel).values(on_hand=1))
        assert reader.scalars(select(StockLevel.on_hand)).one() == 3  # still its snapshot
    assert on_hand(database) == 1


def test_savepoints_roll_back_only_their_part(database: Database) -> None:
    with database.session() as session:
        add_channel(session, "kept")
        with pytest.raises(IntegrityError), session.begin_nested():
            add_channel(session, "kept")
        add_channel(session, "also-kept")
    with database.read_session() as session:
        assert sorted(session.scalars(select(Channel.name))) == ["also-kept", "kept"]


def test_money_round_trips_exactly(database: Database) -> None:
    amounts = {
        "sum": Decimal("0.1") + Decimal("0.2"),
        "big": Decimal("99999999999999.9999"),
        "negative": Decimal("-12.3400"),
        "cents": Decimal("19.99"),
    }
    with database.session() as session:
        channel = add_channel(session)
        for name, amount in amounts.items():
            add_order(session, channel, name, total=amount)

    with database.read_session() as session:
        stored = dict(session.execute(select(Order.external_id, Order.total)).all())
    for name, amount in amounts.items():
        assert isinstance(stored[name], Decimal)
        assert stored[name] == amount
    assert stored["sum"] == Decimal("0.3")


def test_money_refuses_floats(database: Database) -> None:
    with pytest.raises(StatementError) as refused, database.session() as session:
        add_order(session, add_channel(session), "A-1", total=0.1)
    assert isinstance(refused.value.orig, TypeError)
    assert "Decimal" in str(refused.value.orig)


def test_datetimes_come_back_aware_utc(database: Database) -> None:
    paris = timezone(timedelta(hours=2))
    local = datetime(2025, 6, 1, 14, 30, 15, 123456, tzinfo=paris)
    with database.session() as session:
        add_order(session, add_channel(session), "A-1", channel_created_at=local)

    with database.read_session() as session:
        order = session.scalars(select(Order)).one()
    assert order.channel_created_at == local
    assert order.channel_created_at is not None and order.channel_created_at.tzinfo is UTC
    assert order.channel_created_at.hour == 12
    assert order.channel_updated_at == T0 and order.channel_updated_at.tzinfo is UTC
    assert order.ingested_at.tzinfo is UTC  # the model's default, too


def test_naive_datetimes_are_refused(database: Database) -> None:
    with pytest.raises(StatementError) as refused, database.session() as session:
        add_order(session, add_channel(session), "A-1", channel_created_at=datetime(2025, 6, 1))
    assert isinstance(refused.value.orig, ValueError)
    assert "naive" in str(refused.value.orig)


def test_one_pending_job_per_identity_any_number_done(database: Database) -> None:
    def job(channel: Channel, state: JobState) -> OutboxJob:
        return OutboxJob(
            channel_id=channel.id,
            kind=JobKind.STOCK,
            identity_key="stock:shopify-main:MUG",
            payload={"quantity": 3},
            state=state,
        )

    with database.session() as session:
        channel = add_channel(session)
        session.add_all([job(channel, JobState.DONE) for _ in range(3)])
        session.add(job(channel, JobState.DEAD))
        session.add(job(channel, JobState.PENDING))

    with pytest.raises(IntegrityError), database.session() as session:
        session.add(job(channel, JobState.PENDING))

    with database.read_session() as session:
        states = sorted(session.scalars(select(OutboxJob.state)))
    assert states == sorted([JobState.DONE] * 3 + [JobState.DEAD, JobState.PENDING])


# --- transact: retries ----------------------------------------------------------------------


def _count_errors(db: Database) -> list[BaseException]:
    seen: list[BaseException] = []

    @event.listens_for(db.engine, "handle_error")
    def _seen(context: ExceptionContext) -> None:
        seen.append(context.original_exception)

    return seen


@pytest.mark.pg
def test_transact_retries_a_serialization_failure(pg_database: Database, pg_url: str) -> None:
    add_stock(pg_database, on_hand=10)
    failures = _count_errors(pg_database)
    attempts: list[int] = []
    rival = psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True)

    def sell_one(session: Session) -> int:
        attempts.append(1)
        session.execute(text("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"))
        current = session.scalars(select(StockLevel.on_hand)).one()
        if len(attempts) == 1:
            # Another instance sells one unit after we read: our write would lose it.
            rival.execute("UPDATE stock_levels SET on_hand = on_hand - 1")
        session.execute(update(StockLevel).values(on_hand=current - 1))
        return current - 1

    try:
        assert pg_database.transact(sell_one) == 8
    finally:
        rival.close()
    assert len(attempts) == 2
    assert [getattr(exc, "sqlstate", None) for exc in failures] == ["40001"]
    assert on_hand(pg_database) == 8


@pytest.mark.pg
def test_transact_retries_a_deadlock_victim(pg_database: Database) -> None:
    with pg_database.session() as session:
        session.add_all([Sku(sku="A"), Sku(sku="B")])
        session.flush()
        session.add_all([StockLevel(sku=s, location="main", on_hand=0) for s in "AB"])
    failures = _count_errors(pg_database)
    both_hold_one = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def bump(first: str, second: str) -> None:
        calls = 0

        def locks_in_order(session: Session) -> None:
            nonlocal calls
            calls += 1
            for sku in (first, second):
                session.execute(
                    update(StockLevel)
                    .where(StockLevel.sku == sku)
                    .values(on_hand=StockLevel.on_hand + 1)
                )
                if sku == first and calls == 1:
                    both_hold_one.wait()  # each holds one row lock and now wants the other's

        try:
            pg_database.transact(locks_in_order)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=order) for order in (("A", "B"), ("B", "A"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert [getattr(exc, "sqlstate", None) for exc in failures] == ["40P01"]
    with pg_database.read_session() as session:
        assert dict(session.execute(select(StockLevel.sku, StockLevel.on_hand)).all()) == {
            "A": 2,
            "B": 2,
        }


def _hold_sqlite_write_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_transact_retries_when_sqlite_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    db = Database(sqlite_url(path), busy_timeout=0.05)
    upgrade(db)
    add_stock(db, on_hand=5)
    holder = _hold_sqlite_write_lock(path)  # another process writing for longer than busy_timeout
    failures: list[str] = []

    @event.listens_for(db.engine, "handle_error")
    def _release(context: ExceptionContext) -> None:
        failures.append(str(context.original_exception))
        holder.execute("COMMIT")  # the other writer finishes; the retry must then succeed

    def sell_one(session: Session) -> None:
        session.execute(update(StockLevel).values(on_hand=StockLevel.on_hand - 1))

    db.transact(sell_one)
    assert failures == ["database is locked"]
    assert on_hand(db) == 4
    holder.close()
    db.dispose()


def test_transact_gives_up_after_its_attempts(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    db = Database(sqlite_url(path), busy_timeout=0.01)
    upgrade(db)
    holder = _hold_sqlite_write_lock(path)
    failures = _count_errors(db)
    calls: list[int] = []
    with pytest.raises(OperationalError, match="database is locked"):
        db.transact(lambda session: calls.append(1), attempts=3)
    assert len(failures) == 3
    assert calls == []  # BEGIN IMMEDIATE failed before fn could run
    holder.close()
    db.dispose()


def test_transact_does_not_retry_other_errors(database: Database) -> None:
    with database.session() as session:
        add_channel(session)
    calls: list[int] = []

    def duplicate(session: Session) -> None:
        calls.append(1)
        add_channel(session)

    with pytest.raises(IntegrityError):
        database.transact(duplicate)
    assert calls == [1]
