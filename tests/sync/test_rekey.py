"""Key rotation and legacy sealing, on both databases, reading the rows.

A store holding orders and inbox deliveries sealed under key A, plus rows an older version wrote
in plain text (written straight into the old columns), is rotated to key B with A among the
previous keys: afterwards every value is under B, nothing plain is left in any column, and a
keyring holding B alone opens every order's ship-to and every delivery. A rerun re-seals nothing;
a value under a key the keyring lacks is counted by key id, not opened, not crashed on; re-sealing
leaves retention's clock (updated_at) alone; erasure clears the sealed value and its key id. The
`rotate-key` command does the same through the config, and `--new-key-file` writes a key once.
An inbox delivery sealed under a key this process lacks (another instance's) is left unclaimed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from connectors.base import Address, Money, Order, OrderLine, OrderStatus
from sync.buyer_data import erase_where, ship_to_of
from sync.db import Database, sqlite_url, upgrade
from sync.inbox import claim_deliveries, delivery_body, record_delivery
from sync.ingest import ChannelRef, ingest_orders
from sync.models import Channel, InboxState, Sku, StockLevel, WebhookDelivery
from sync.models import Order as OrderRow
from sync.rekey import rotate, seal_legacy
from sync.sealing import (
    Keyring,
    current_keyring,
    encode_key,
    install_keyring,
    key_id,
    load_keyring,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
KEY_C = bytes(range(200, 232))
NOW = datetime.now(UTC)
NAMES = {f"o-{n}": f"CANARY-NAME-{n}-7f3a" for n in range(1, 6)}
LEGACY_NAME = "CANARY-LEGACY-9c1d"
LEGACY_BODY = b'{"buyer":"CANARY-LEGACY-BODY-4e2b"}'
CHANNEL_SYNC = str(Path(sys.executable).with_name("channel-sync"))


@pytest.fixture(autouse=True)
def _keyring_restored() -> Iterator[None]:
    before = current_keyring()
    yield
    install_keyring(before)


def _order(external_id: str) -> Order:
    return Order(
        external_id=external_id,
        number=f"#{external_id}",
        status=OrderStatus.OPEN,
        currency="EUR",
        updated_at=NOW - timedelta(days=1),
        total=Money(Decimal("9.99"), "EUR"),
        lines=[OrderLine(f"{external_id}-1", "A", 1, unit_price=Money(Decimal("9.99"), "EUR"))],
        ship_to=Address(name=NAMES[external_id], line1="1 Canary Row", country_code="GB"),
        buyer_ref=f"ref-{external_id}",
    )


def _seed(database: Database, *, under: Keyring) -> ChannelRef:
    """Orders and deliveries sealed under `under`, and one plain order and one plain delivery."""
    install_keyring(under)
    with database.session() as session:
        channel = Channel(name="shop", kind="shopify")
        session.add_all([channel, Sku(sku="A")])
        session.flush()
        session.add(StockLevel(sku="A", location="default", on_hand=100))
        ref = ChannelRef(channel.id, "shop")
    with database.session() as session:
        ingest_orders(session, ref, [_order(ext) for ext in NAMES])
        for n in range(3):
            body = b'{"name":"%s"}' % NAMES[f"o-{n + 1}"].encode()
            record_delivery(
                session, channel_id=ref.id, delivery_id=f"d-{n}", topic="orders/create", body=body
            )
    # What a store older than migration 0005 holds: plain text in the old columns.
    with database.session() as session:
        session.execute(
            insert(OrderRow).values(
                channel_id=ref.id,
                external_id="legacy-1",
                status=OrderStatus.OPEN,
                currency="EUR",
                ship_to={"name": LEGACY_NAME, "line1": "9 Old Road", "country_code": "GB"},
                buyer_ref="ref-legacy",
                channel_updated_at=NOW - timedelta(days=3),
                updated_at=NOW - timedelta(days=3),
            )
        )
        session.execute(
            insert(WebhookDelivery).values(
                channel_id=ref.id,
                delivery_id="legacy-d",
                topic="orders/create",
                body=LEGACY_BODY,
                key_id=None,
                state=InboxState.PROCESSED,
                attempts=0,
            )
        )
    return ref


def _raw_text(database: Database) -> str:
    """Every column of orders and the inbox as stored, as text (what a dump shows)."""
    with database.read_session() as session:
        rows = [
            repr(row)
            for table in ("orders", "webhook_inbox")
            for row in session.execute(text(f"SELECT * FROM {table}"))  # noqa: S608 - fixed names
        ]
        return "\n".join(rows)


def _key_ids(database: Database) -> tuple[set[Any], set[Any]]:
    with database.read_session() as session:
        orders = set(session.scalars(select(OrderRow.pii_key_id)))
        inbox = set(session.scalars(select(WebhookDelivery.key_id)))
        return orders, inbox


def _opened(database: Database) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Every ship-to name and every delivery body, opened with the installed keyring."""
    with database.read_session() as session:
        names = {}
        for row in session.scalars(select(OrderRow)):
            ship_to = ship_to_of(row)
            names[row.external_id] = ship_to["name"] if ship_to else None
        bodies = {
            row.delivery_id: delivery_body(row) for row in session.scalars(select(WebhookDelivery))
        }
        return names, bodies


def test_rotation_moves_every_value_to_the_new_key_and_seals_legacy_rows(
    database: Database,
) -> None:
    _seed(database, under=Keyring(KEY_A))
    before = _raw_text(database)
    assert LEGACY_NAME in before and "CANARY-LEGACY-BODY" in before  # the check can fail
    assert "CANARY-NAME-" not in before  # sealed from the start
    with database.read_session() as session:
        kept_updated = {r.external_id: r.updated_at for r in session.scalars(select(OrderRow))}

    keyring = Keyring(KEY_B, [KEY_A])
    install_keyring(keyring)
    report = rotate(database, keyring, chunk=2)  # several chunks, several transactions
    assert (report.sealed_legacy_orders, report.sealed_legacy_inbox) == (1, 1)
    assert (report.resealed_orders, report.resealed_inbox) == (len(NAMES), 3)
    assert report.remaining == {} and report.unopenable == 0

    assert _key_ids(database) == ({key_id(KEY_B)}, {key_id(KEY_B)})
    after = _raw_text(database)
    assert "CANARY" not in after and "9 Old Road" not in after
    with database.read_session() as session:
        assert session.scalar(select(OrderRow.id).where(OrderRow.ship_to.is_not(None))) is None
        # Re-sealing is no change of the order: retention still counts from the old time.
        assert {
            r.external_id: r.updated_at for r in session.scalars(select(OrderRow))
        } == kept_updated

    # B alone opens everything: A can be dropped.
    install_keyring(Keyring(KEY_B))
    names, bodies = _opened(database)
    assert names == {**NAMES, "legacy-1": LEGACY_NAME}
    assert bodies["legacy-d"] == LEGACY_BODY
    assert bodies["d-0"] == b'{"name":"%s"}' % NAMES["o-1"].encode()

    again = rotate(database, Keyring(KEY_B, [KEY_A]))
    assert (again.resealed_orders, again.resealed_inbox) == (0, 0)
    assert (again.sealed_legacy_orders, again.sealed_legacy_inbox) == (0, 0)
    assert again.remaining == {}


def test_a_value_under_a_key_not_in_the_keyring_is_reported_not_opened(
    database: Database,
) -> None:
    _seed(database, under=Keyring(KEY_C))
    keyring = Keyring(KEY_B, [KEY_A])  # C is missing
    install_keyring(keyring)
    report = rotate(database, keyring)
    assert report.resealed_orders == 0 and report.resealed_inbox == 0
    assert report.sealed_legacy_orders == 1  # plain rows are sealed all the same
    assert report.remaining == {key_id(KEY_C): len(NAMES) + 3}
    assert report.unknown_keys(keyring) == {key_id(KEY_C): len(NAMES) + 3}
    # Adding C as a previous key finishes the job.
    report = rotate(database, Keyring(KEY_B, [KEY_C]))
    assert report.resealed_orders == len(NAMES) and report.remaining == {}


def test_the_daemon_start_pass_seals_only_legacy_rows(database: Database) -> None:
    _seed(database, under=Keyring(KEY_A))
    keyring = Keyring(KEY_B, [KEY_A])
    report = seal_legacy(database, keyring)
    assert (report.sealed_legacy_orders, report.sealed_legacy_inbox) == (1, 1)
    assert report.resealed_orders == 0
    orders, inbox = _key_ids(database)
    assert orders == {key_id(KEY_A), key_id(KEY_B)} and inbox == {key_id(KEY_A), key_id(KEY_B)}
    assert "CANARY" not in _raw_text(database)


def test_erasure_clears_the_sealed_value_and_its_key_id(database: Database) -> None:
    _seed(database, under=Keyring(KEY_A))
    with database.session() as session:
        erased = erase_where(session, OrderRow.external_id.in_(["o-1", "legacy-1"]), NOW)
    assert erased == 2
    with database.read_session() as session:
        rows = {r.external_id: r for r in session.scalars(select(OrderRow))}
        for ext in ("o-1", "legacy-1"):
            row = rows[ext]
            assert (row.ship_to, row.ship_to_sealed, row.pii_key_id, row.buyer_ref) == (
                None,
                None,
                None,
                None,
            )
            assert row.pii_erased_at is not None
        assert rows["o-2"].ship_to_sealed is not None
    assert LEGACY_NAME not in _raw_text(database)


def _config(root: Path, *, key: str | None, previous: list[str]) -> Path:
    (root / "channels").mkdir(parents=True, exist_ok=True)
    buyer = ""
    if key is not None:
        listed = ", ".join(f'"{p}"' for p in previous)
        buyer = f'[buyer_data]\nkey = "{key}"\nprevious_keys = [{listed}]\n'
    (root / "channel-sync.toml").write_text(
        f'state_dir = "{root / "state"}"\n[admin]\ntoken = "env:REKEY_TEST_TOKEN"\n{buyer}'
    )
    return root


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REKEY_TEST_TOKEN": "token-for-the-rekey-test"}
    return subprocess.run(
        [CHANNEL_SYNC, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_the_rotate_key_command_follows_the_documented_steps(tmp_path: Path) -> None:
    # A store whose key was generated at first start (no [buyer_data] key).
    root = _config(tmp_path / "config", key=None, previous=[])
    generated, _ = load_keyring(None, [], root / "state")
    database = Database(sqlite_url(root / "state" / "channel-sync.db"))
    try:
        upgrade(database)
        _seed(database, under=generated)
    finally:
        database.dispose()

    # (1) a new key file, never overwritten.
    new_key = tmp_path / "keys" / "buyer-data.2.key"
    made = _cli("rotate-key", "--config", str(root), "--new-key-file", str(new_key))
    assert made.returncode == 0, made.stderr
    assert f"reference: file:{new_key}" in made.stdout
    assert new_key.stat().st_mode & 0o777 == 0o600
    new_id = load_keyring(new_key.read_text(), [], tmp_path)[0].current_id
    assert new_id in made.stdout and new_key.read_text().strip() not in made.stdout
    refused = _cli("rotate-key", "--config", str(root), "--new-key-file", str(new_key))
    assert refused.returncode != 0 and "refusing to overwrite" in refused.stderr

    # (2) the new key current, the generated one previous; (3) rotate.
    old_file = root / "state" / "buyer-data.key"
    _config(root, key=f"file:{new_key}", previous=[f"file:{old_file}"])
    done = _cli("rotate-key", "--config", str(root))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"current key: {new_id}" in done.stdout
    assert f"re-sealed under the current key: {len(NAMES)} order(s), 3 webhook" in done.stdout
    assert "remaining under old keys: 0" in done.stdout
    for output in (made, done):
        assert "CANARY" not in output.stdout + output.stderr
        assert encode_key(KEY_A) not in output.stdout

    # (4) the old key dropped: everything still opens.
    _config(root, key=f"file:{new_key}", previous=[])
    again = _cli("rotate-key", "--config", str(root))
    assert again.returncode == 0 and "re-sealed under the current key: 0 order(s)" in again.stdout
    checked = _cli("check-config", str(root))
    assert checked.returncode == 0 and f"(id {new_id})" in checked.stdout
    assert new_key.read_text().strip() not in checked.stdout
    database = Database(sqlite_url(root / "state" / "channel-sync.db"))
    try:
        install_keyring(load_keyring(new_key.read_text(), [], tmp_path)[0])
        names, _ = _opened(database)
        assert names == {**NAMES, "legacy-1": LEGACY_NAME}
    finally:
        database.dispose()


def test_a_delivery_under_a_key_this_process_lacks_is_left_for_one_that_holds_it(
    database: Database,
) -> None:
    _seed(database, under=Keyring(KEY_A))  # as instance A received them
    install_keyring(Keyring(KEY_B))  # instance B, with its own generated key
    with database.session() as session:
        assert claim_deliveries(session, 10) == []
    install_keyring(Keyring(KEY_B, [KEY_A]))
    with database.session() as session:
        claimed = {row.delivery_id: delivery_body(row) for row in claim_deliveries(session, 10)}
    assert set(claimed) == {"d-0", "d-1", "d-2"}
    assert claimed["d-0"] == b'{"name":"%s"}' % NAMES["o-1"].encode()


def test_a_configured_key_of_the_wrong_size_is_refused_naming_the_key_not_the_value(
    tmp_path: Path,
) -> None:
    from config.loader import ConfigError, load_config

    root = _config(tmp_path / "config", key="env:SHORT_BUYER_KEY", previous=[])
    short = encode_key(KEY_A[:16])
    env = {"REKEY_TEST_TOKEN": "token-for-the-rekey-test", "SHORT_BUYER_KEY": short}
    with pytest.raises(ConfigError) as caught:
        load_config(root, env=env)
    problems = "\n".join(str(problem) for problem in caught.value.problems)
    assert "buyer_data.key" in problems and "16 bytes" in problems, problems
    assert short not in problems
    good = load_config(root, env={**env, "SHORT_BUYER_KEY": encode_key(KEY_A)})
    assert good.main.buyer_data.key is not None
