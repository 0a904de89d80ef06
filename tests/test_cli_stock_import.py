"""`channel-sync stock import FILE.csv --config DIR` as an operator runs it: a real subprocess."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from sync.db import Database, upgrade
from sync.models import Channel, Listing, Sku, StockLevel
from tests.support.daemon import CHANNEL_SYNC, DaemonConfig

TOKEN = "test-admin-token-0123456789"


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> DaemonConfig:
    """A config dir over a migrated store with SKUs A, B, bundle KIT, and a clean listing of A."""
    config = DaemonConfig(root=tmp_path / "cfg", database_url=db_url, auto_migrate=False)
    config.write()
    db = Database(db_url)
    try:
        upgrade(db)
        with db.session() as session:
            channel = Channel(name="shop", kind="memory")
            session.add(channel)
            session.add_all([Sku(sku="A"), Sku(sku="B"), Sku(sku="KIT", is_bundle=True)])
            session.flush()
            session.add(StockLevel(sku="A", location="default", on_hand=1))
            session.add(
                Listing(channel_id=channel.id, sku="A", external_ref="shop:A", is_dirty=False)
            )
    finally:
        db.dispose()
    return config


def _import(config: DaemonConfig, csv_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHANNEL_SYNC, "stock", "import", str(csv_path), "--config", str(config.root)],
        env={**os.environ, config.admin_token_env: TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _store(config: DaemonConfig) -> tuple[dict[tuple[str, str], int], dict[str, bool]]:
    assert config.database_url is not None
    db = Database(config.database_url)
    try:
        with db.read_session() as session:
            levels = {
                (sku, loc): n
                for sku, loc, n in session.execute(
                    select(StockLevel.sku, StockLevel.location, StockLevel.on_hand)
                )
            }
            dirty = dict(session.execute(select(Listing.external_ref, Listing.is_dirty)).all())
    finally:
        db.dispose()
    return levels, dirty


def test_a_good_file_is_applied(config: DaemonConfig, tmp_path: Path) -> None:
    csv_path = tmp_path / "stock.csv"
    csv_path.write_text("sku,location,on_hand\nA,default,12\nB,default,3\nB,backroom,0\n")
    result = _import(config, csv_path)
    assert result.returncode == 0, result.stderr
    assert "3 rows applied, 2 SKUs changed" in result.stdout
    assert _store(config) == (
        {("A", "default"): 12, ("B", "default"): 3, ("B", "backroom"): 0},
        {"shop:A": True},
    )


def test_a_file_with_a_bad_row_changes_nothing_and_names_the_line(
    config: DaemonConfig, tmp_path: Path
) -> None:
    csv_path = tmp_path / "stock.csv"
    csv_path.write_text("sku,location,on_hand\nA,default,12\nB,default,three\nKIT,default,1\n")
    before = _store(config)
    result = _import(config, csv_path)
    assert result.returncode == 2
    assert f"{csv_path}:line 3: on_hand 'three' is not a whole number" in result.stderr
    assert f"{csv_path}:line 4: SKU 'KIT' is a bundle" in result.stderr
    assert "nothing was applied" in result.stderr
    assert result.stdout == ""
    assert _store(config) == before


def test_an_unmigrated_store_is_refused_with_exit_3(tmp_path: Path) -> None:
    config = DaemonConfig(
        root=tmp_path / "cfg",
        database_url=f"sqlite:///{tmp_path / 'empty.db'}",
        auto_migrate=False,
    )
    config.write()
    csv_path = tmp_path / "stock.csv"
    csv_path.write_text("A,default,1\n")
    result = _import(config, csv_path)
    assert result.returncode == 3
    assert "channel-sync migrate" in result.stderr
