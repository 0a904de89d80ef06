"""Onboarding from a channel and the listings report, as a seller runs them: real subprocesses
against a reference marketplace on loopback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sqlalchemy import select

from sync.db import Database, upgrade
from sync.models import Channel, Listing, Sku, StockLevel
from tests.support.daemon import CHANNEL_SYNC, DaemonConfig
from tests.support.reference import ReferenceSandbox

TOKEN = "onboarding-admin-token-5512"


def _run(
    config: DaemonConfig, env: dict[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHANNEL_SYNC, *args, "--config", str(config.root)],
        env={**os.environ, config.admin_token_env: TOKEN, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _state(url: str) -> tuple[dict[str, int], set[tuple[str, str]]]:
    db = Database(url)
    try:
        with db.read_session() as session:
            on_hand = {s.sku: s.on_hand for s in session.scalars(select(StockLevel))}
            bound = {(lst.sku, lst.external_ref) for lst in session.scalars(select(Listing))}
            return on_hand, bound
    finally:
        db.dispose()


def test_a_seller_starts_from_the_stock_one_channel_shows(tmp_path: Path, db_url: str) -> None:
    with ReferenceSandbox(tmp_path / "sandbox", ["shop"]) as sandbox:
        sandbox.control("shop", "POST", "/stock", {"A": 4, "B": 0, "C": 9})
        config = DaemonConfig(
            root=tmp_path / "cfg",
            database_url=db_url,
            auto_migrate=False,
            channels={"shop": sandbox.channel_file("shop")},
        )
        config.write()
        db = Database(db_url)
        try:
            upgrade(db)
            with db.session() as session:
                session.add(Channel(name="shop", kind="reference"))
                session.add_all([Sku(sku="A"), Sku(sku="Z")])
                session.flush()
                session.add(StockLevel(sku="A", location="default", on_hand=1))
        finally:
            db.dispose()

        before = _run(config, sandbox.env, "listings")
        assert before.returncode == 0, before.stderr
        assert "0 bound, 2 unknown here, 1 missing there" in before.stdout

        declined = _run(
            config, sandbox.env, "stock", "import", "--from-channel", "shop", stdin="n\n"
        )
        assert declined.returncode == 1
        assert "nothing was changed" in declined.stdout
        assert _state(db_url) == ({"A": 1}, set())  # the plan alone writes nothing

        applied = _run(config, sandbox.env, "stock", "import", "--from-channel", "shop", "--yes")
        assert applied.returncode == 0, applied.stderr
        assert "2 SKUs created, 3 listings bound" in applied.stdout
        on_hand, bound = _state(db_url)
        assert on_hand == {"A": 4, "B": 0, "C": 9}
        assert bound == {("A", "L-A"), ("B", "L-B"), ("C", "L-C")}

        after = _run(config, sandbox.env, "listings")
        assert "3 bound, 0 unknown here, 1 missing there" in after.stdout
        assert "missing  Z" in after.stdout
        again = _run(config, sandbox.env, "stock", "import", "--from-channel", "shop", "--yes")
        assert "nothing to change" in again.stdout
        for result in (before, declined, applied, after, again):
            assert sandbox.token not in result.stdout + result.stderr


def test_an_unknown_channel_or_both_sources_are_refused(tmp_path: Path, db_url: str) -> None:
    config = DaemonConfig(root=tmp_path / "cfg", database_url=db_url)
    config.write()
    csv = tmp_path / "stock.csv"
    csv.write_text("sku,location,on_hand\nA,default,1\n")
    unknown = _run(config, {}, "stock", "import", "--from-channel", "nope", "--yes")
    assert unknown.returncode == 2 and "no channel 'nope'" in unknown.stderr
    both = _run(config, {}, "stock", "import", str(csv), "--from-channel", "nope")
    assert both.returncode == 2 and "either FILE.csv or --from-channel" in both.stderr
