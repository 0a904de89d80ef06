"""define_catalogue: SKUs and bundles stated outright, added once, on both backends; the demo
catalogue loads with its on hand and every bundle's availability derives from its parts."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.demo_catalogue import DEMO_CATALOGUE
from sync.catalogue import CatalogueError, define_catalogue
from sync.db import Database
from sync.models import BundleComponent, Sku, StockLevel
from sync.orders_view import stock_item
from sync.stock_ops import apply_on_hand


def test_skus_and_bundles_are_added_once(database: Database) -> None:
    products = {"A": "Alpha", "B": None}
    bundles = {"KIT": ("Kit", {"A": 2, "B": 1})}

    first = database.transact(lambda s: define_catalogue(s, products, bundles))
    again = database.transact(lambda s: define_catalogue(s, products, bundles))

    assert first.skus_added == ("A", "B") and first.bundles_added == ("KIT",)
    assert again.skus_added == () and again.bundles_added == ()
    with database.read_session() as session:
        rows = {row.sku: (row.title, row.is_bundle) for row in session.scalars(select(Sku))}
        parts = set(
            session.execute(select(BundleComponent.component_sku, BundleComponent.quantity))
        )
    assert rows == {"A": ("Alpha", False), "B": (None, False), "KIT": ("Kit", True)}
    assert parts == {("A", 2), ("B", 1)}


@pytest.mark.parametrize(
    ("bundles", "problem"),
    [
        ({"KIT": ("Kit", {})}, "no components"),
        ({"KIT": ("Kit", {"A": 0})}, "0 units"),
        ({"KIT": ("Kit", {"NOPE": 1})}, "unknown component 'NOPE'"),
        ({"KIT": ("Kit", {"SET": 1}), "SET": ("Set", {"A": 1})}, "is a bundle"),
    ],
)
def test_a_bad_bundle_adds_nothing(
    database: Database, bundles: dict[str, tuple[str, dict[str, int]]], problem: str
) -> None:
    with pytest.raises(CatalogueError, match=problem):
        database.transact(lambda s: define_catalogue(s, {"A": None}, bundles))
    with database.read_session() as session:
        assert list(session.scalars(select(Sku.sku))) == []


def test_the_demo_catalogue_loads_with_what_the_marketplaces_list(database: Database) -> None:
    products = {p.sku: p.title for p in DEMO_CATALOGUE.products}
    bundles = {b.sku: (b.title, dict(b.components)) for b in DEMO_CATALOGUE.bundles}
    rows = [(p.sku, "default", p.units) for p in DEMO_CATALOGUE.products]

    def load(session: Session) -> None:
        define_catalogue(session, products, bundles)
        apply_on_hand(session, rows, source="demo")

    database.transact(load)

    listed = {sku: units for sku, units, _ in DEMO_CATALOGUE.listed()}
    assert len(listed) == 50
    assert sum(1 for p in DEMO_CATALOGUE.products if p.units <= 3) >= 5  # contention shows
    with database.read_session() as session:
        assert session.scalar(select(StockLevel.on_hand).where(StockLevel.sku == "MUG-BLUE")) == 25
        for bundle in DEMO_CATALOGUE.bundles:
            detail = stock_item(session, bundle.sku)
            assert detail is not None
            assert detail["totals"]["available"] == listed[bundle.sku], bundle.sku
