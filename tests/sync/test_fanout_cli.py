"""`channel-sync ship ORDER --carrier --tracking [--line SKU=QTY] --config DIR`, as an operator runs
it: a real subprocess against a real store."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from sync.db import Database, upgrade
from sync.models import JobKind, OutboxJob
from tests.support.daemon import CHANNEL_SYNC, DaemonConfig
from tests.sync.engine_harness import Store
from tests.sync.fanout_helpers import check_ledger, lines_of, make_store, place, store_state

TOKEN = "test-admin-token-0123456789"


@pytest.fixture
def setup(tmp_path: Path, db_url: str) -> Iterator[tuple[DaemonConfig, Store]]:
    """A config dir over a migrated store with the reference channels and SKUs."""
    config = DaemonConfig(root=tmp_path / "cfg", database_url=db_url, auto_migrate=False)
    config.write()
    db = Database(db_url)
    try:
        upgrade(db)
        yield config, make_store(db)
    finally:
        db.dispose()


def _ship(config: DaemonConfig, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHANNEL_SYNC, "ship", *args, "--config", str(config.root)],
        env={**os.environ, config.admin_token_env: TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ship_by_the_channels_order_id_records_and_queues_it(
    setup: tuple[DaemonConfig, Store],
) -> None:
    config, store = setup
    ext, order_id = place(store, "shop", [("A", 3), ("B", 1)])
    result = _ship(config, ext, "--carrier", "UPS", "--tracking", "1Z9", "--line", "A=2")
    assert result.returncode == 0, result.stderr
    assert f"recorded for order {order_id}: 2 unit(s); the order is partially_shipped" in (
        result.stdout
    )
    assert lines_of(store.db, order_id) == {f"{ext}-1": (3, 0, 2), f"{ext}-2": (1, 0, 0)}
    check_ledger(store.db)
    with store.db.read_session() as session:
        (payload,) = session.scalars(
            select(OutboxJob.payload).where(OutboxJob.kind == JobKind.SHIPMENT)
        )
    assert (payload["order_external_id"], payload["carrier"], payload["tracking"]) == (
        ext,
        "UPS",
        "1Z9",
    )

    result = _ship(config, f"id:{order_id}", "--carrier", "UPS", "--tracking", "1Z10")
    assert result.returncode == 0, result.stderr
    assert "2 unit(s); the order is shipped" in result.stdout


@pytest.mark.parametrize(
    ("order", "extra", "words"),
    [
        ("O-1", [], "matches 2 orders"),  # the shop's and the market's first orders
        ("O-404", [], "no order matches 'O-404'"),
        ("O-1", ["--channel", "nowhere"], "no channel named 'nowhere'"),
        ("O-1", ["--channel", "shop", "--line", "A=9"], "9 units asked to ship"),
        ("O-1", ["--channel", "shop", "--line", "C=1"], "no line for SKU 'C'"),
        ("id:1", ["--line", "A"], "'A' is not SKU=QTY"),
        ("id:1", ["--line", "A=-1"], "'A=-1' is not SKU=QTY"),
        ("id:1", ["--tracking", " "], "tracking: empty"),
    ],
)
def test_a_refused_ship_exits_2_with_the_reason_and_writes_nothing(
    setup: tuple[DaemonConfig, Store], order: str, extra: list[str], words: str
) -> None:
    config, store = setup
    place(store, "shop", [("A", 2)])
    place(store, "market", [("B", 1)])
    before = store_state(store.db)
    args = ["--carrier", "UPS", "--tracking", "1Z", *extra]
    result = _ship(config, order, *args)
    assert result.returncode == 2, result.stdout
    assert words in result.stderr
    assert store_state(store.db) == before
