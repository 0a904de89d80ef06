"""Operator stock changes: one SKU at a time, and the all-or-nothing CSV import."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connectors.base import Order, OrderLine, OrderStatus
from sync.db import Database
from sync.ingest import ChannelRef, ingest_orders
from sync.models import BundleComponent, Channel, Event, Listing, Sku, StockLevel
from sync.models import Order as OrderRow
from sync.stock_ops import (
    BundleStockError,
    StockImportError,
    StockInputError,
    UnknownSkuError,
    import_stock_csv,
    set_stock,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _seed(database: Database) -> dict[str, int]:
    """SKUs A, B, C; KIT = 2 A + 1 B; A and C on `shop`, KIT on `market`; all listings clean."""
    with database.session() as session:
        shop, market = Channel(name="shop", kind="memory"), Channel(name="market", kind="memory")
        session.add_all([shop, market])
        session.add_all(Sku(sku=code) for code in ("A", "B", "C"))
        session.add(Sku(sku="KIT", is_bundle=True))
        session.flush()
        session.add_all(
            [
                BundleComponent(bundle_sku="KIT", component_sku="A", quantity=2),
                BundleComponent(bundle_sku="KIT", component_sku="B", quantity=1),
                StockLevel(sku="A", location="default", on_hand=5),
                StockLevel(sku="B", location="default", on_hand=5),
                StockLevel(sku="C", location="default", on_hand=5),
                Listing(channel_id=shop.id, sku="A", external_ref="shop:A", is_dirty=False),
                Listing(channel_id=shop.id, sku="C", external_ref="shop:C", is_dirty=False),
                Listing(channel_id=market.id, sku="KIT", external_ref="market:KIT", is_dirty=False),
            ]
        )
        session.flush()
        return {"shop": shop.id, "market": market.id}


def _order_for(database: Database, channel_id: int, external_id: str, sku: str, n: int) -> None:
    order = Order(
        external_id=external_id,
        status=OrderStatus.OPEN,
        currency="USD",
        updated_at=T0 + timedelta(minutes=n),
        lines=[OrderLine(external_line_id=f"{external_id}-1", sku=sku, quantity=1)],
    )
    with database.session() as session:
        ingest_orders(session, ChannelRef(id=channel_id, name="shop"), [order])


def _snapshot(database: Database) -> tuple[dict[tuple[str, str], int], int, dict[str, bool]]:
    """Stock rows, event count and dirty flags: what a refused change must leave alone."""
    with database.read_session() as session:
        levels = {
            (s, loc): n
            for s, loc, n in session.execute(
                select(StockLevel.sku, StockLevel.location, StockLevel.on_hand)
            )
        }
        events = session.scalar(select(func.count()).select_from(Event)) or 0
        dirty = dict(session.execute(select(Listing.external_ref, Listing.is_dirty)).all())
    return levels, events, dirty


def _oversold(session: Session) -> set[str]:
    return set(session.scalars(select(OrderRow.external_id).where(OrderRow.is_oversold.is_(True))))


def test_set_stock_sets_on_hand_and_marks_the_sku_and_its_bundles_dirty(
    database: Database,
) -> None:
    channels = _seed(database)
    with database.session() as session:
        change = set_stock(session, "A", "default", 9)
    assert (change.old, change.new, change.is_changed) == (5, 9, True)
    assert change.dirty_channels == {channels["shop"], channels["market"]}
    with database.read_session() as session:
        assert session.get(StockLevel, ("A", "default")) is not None
        assert session.scalar(select(StockLevel.on_hand).where(StockLevel.sku == "A")) == 9
        dirty = dict(session.execute(select(Listing.external_ref, Listing.is_dirty)).all())
        event = session.scalars(select(Event).where(Event.kind == "stock.set")).one()
    assert dirty == {"shop:A": True, "market:KIT": True, "shop:C": False}
    assert (event.sku, event.data) == ("A", {"location": "default", "old": 5, "new": 9})


def test_set_stock_at_a_new_location_starts_from_zero(database: Database) -> None:
    _seed(database)
    with database.session() as session:
        change = set_stock(session, "C", "warehouse-2", 3)
    assert (change.old, change.new) == (0, 3)
    assert _snapshot(database)[0][("C", "warehouse-2")] == 3


def test_restock_clears_oversold_and_a_count_below_reservations_sets_it(
    database: Database,
) -> None:
    channels = _seed(database)
    with database.session() as session:
        set_stock(session, "C", "default", 2)
    for n in range(3):
        _order_for(database, channels["shop"], f"o{n}", "C", n)
    with database.read_session() as session:
        assert _oversold(session) == {"o2"}

    with database.session() as session:
        set_stock(session, "C", "default", 3)
        assert _oversold(session) == set()

    with database.session() as session:
        set_stock(session, "C", "default", 1)
    with database.read_session() as session:
        # The first order stock covers stays fully reserved; the newer two are the oversold ones.
        assert _oversold(session) == {"o1", "o2"}


@pytest.mark.parametrize(
    ("sku", "location", "on_hand", "error", "message"),
    [
        ("NOPE", "default", 1, UnknownSkuError, "unknown SKU 'NOPE'"),
        ("KIT", "default", 1, BundleStockError, "bundle"),
        ("A", "default", -1, StockInputError, "negative"),
        ("A", "default", True, StockInputError, "whole number"),
        ("A", "default", "5", StockInputError, "whole number"),
        ("A", "", 1, StockInputError, "location is empty"),
        ("A", "x" * 65, 1, StockInputError, "longer than 64"),
    ],
)
def test_set_stock_refuses_bad_input_and_writes_nothing(
    database: Database,
    sku: str,
    location: str,
    on_hand: int,
    error: type[Exception],
    message: str,
) -> None:
    _seed(database)
    before = _snapshot(database)
    with pytest.raises(error, match=message), database.session() as session:
        set_stock(session, sku, location, on_hand)
    assert _snapshot(database) == before


def test_import_applies_every_row_in_one_go(database: Database, tmp_path: Path) -> None:
    channels = _seed(database)
    with database.session() as session:
        set_stock(session, "C", "default", 1)
    _order_for(database, channels["shop"], "o1", "C", 1)
    _order_for(database, channels["shop"], "o2", "C", 2)
    path = tmp_path / "stock.csv"
    # A BOM, a header, CRLF, a blank line, quoted fields and spaces around them are all fine.
    path.write_bytes(
        b'\xef\xbb\xbfsku,location,on_hand\r\nA,default,7\r\n\r\n"B", default ,"0"\r\n'
        b"A,warehouse-2,4\r\nC,default,2\r\n"
    )
    with database.session() as session:
        result = import_stock_csv(session, path)
        assert _oversold(session) == set()
    assert result.rows_applied == 4
    assert result.skus_changed == ["A", "B", "C"]
    assert result.dirty_channels == {channels["shop"], channels["market"]}
    assert result.cleared_oversold and not result.newly_oversold
    levels, _, dirty = _snapshot(database)
    assert levels == {
        ("A", "default"): 7,
        ("A", "warehouse-2"): 4,
        ("B", "default"): 0,
        ("C", "default"): 2,
    }
    assert all(dirty.values())


def test_import_accepts_text_without_a_header(database: Database) -> None:
    _seed(database)
    with database.session() as session:
        result = import_stock_csv(session, "A,default,5\nC,default,1\n")
    # A row that sets what is already there is applied but changes nothing.
    assert (result.rows_applied, result.skus_changed) == (2, ["C"])


GOOD_FIRST = "sku,location,on_hand\nA,default,1\n"
GOOD_LAST = "C,default,2\n"


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ("NOPE,default,1", "unknown SKU 'NOPE'"),
        ("KIT,default,1", "bundle"),
        ("B,default,many", "'many' is not a whole number"),
        ("B,default,1.5", "'1.5' is not a whole number"),
        ("B,default,", "'' is not a whole number"),
        ("B,default,-2", "negative"),
        ("B,default,99999999999", "larger than"),
        ("B,default", "missing column"),
        ("B,default,1,extra", "extra column"),
        ("B,,1", "location is empty"),
        (",default,1", "sku is empty"),
        ("B," + "x" * 65 + ",1", "longer than 64"),
        ("A,default,3", "already set on line 2"),
        ('B,"default,1', "unreadable CSV"),
    ],
    ids=lambda value: value if len(value) < 30 else value[:30],
)
def test_import_with_one_bad_row_applies_nothing_and_names_its_line(
    database: Database, bad_row: str, message: str
) -> None:
    _seed(database)
    before = _snapshot(database)
    with pytest.raises(StockImportError) as caught, database.session() as session:
        import_stock_csv(session, GOOD_FIRST + bad_row + "\n" + GOOD_LAST)
    assert len(caught.value.errors) == 1, caught.value.errors
    assert caught.value.errors[0].startswith("line 3: ")
    assert message in caught.value.errors[0]
    assert _snapshot(database) == before


def test_import_reports_every_bad_row_in_line_order(database: Database) -> None:
    _seed(database)
    with pytest.raises(StockImportError) as caught, database.session() as session:
        import_stock_csv(session, "NOPE,default,1\nA,default,1\nB,default,x\nA,,-1\n")
    assert caught.value.errors == [
        "line 1: unknown SKU 'NOPE'",
        "line 3: on_hand 'x' is not a whole number",
        "line 4: location is empty",
        "line 4: on_hand -1 is negative",
    ]


def test_import_refuses_a_file_that_is_not_utf8(database: Database) -> None:
    _seed(database)
    before = _snapshot(database)
    with pytest.raises(StockImportError) as caught, database.session() as session:
        import_stock_csv(session, b"sku,location,on_hand\nA,default,1\nB,d\xe9p\xf4t,2\n")
    assert caught.value.errors == [
        "line 3: byte 0xe9 at column 4 is not UTF-8; save the file as UTF-8",
    ]
    assert _snapshot(database) == before


def test_import_refuses_an_empty_file(database: Database) -> None:
    _seed(database)
    with pytest.raises(StockImportError, match="no rows"), database.session() as session:
        import_stock_csv(session, "sku,location,on_hand\n\n")
