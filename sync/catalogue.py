"""The seller's catalogue in the store: SKUs and the bundles built from them.

Onboarding creates SKUs from a channel's listings (listings.py); this is the other way in, for a
seller (or the demo) who states the catalogue outright. It only adds: a SKU that exists keeps its
row and, for a bundle, its components. On hand is set afterwards with `stock_ops.apply_on_hand`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.models import BundleComponent, Sku


class CatalogueError(ValueError):
    """A bundle that cannot be defined as given (the message says why)."""


@dataclass(frozen=True)
class CatalogueResult:
    """The SKUs this call added."""

    skus_added: tuple[str, ...]
    bundles_added: tuple[str, ...]


def define_catalogue(
    session: Session,
    products: Mapping[str, str | None],
    bundles: Mapping[str, tuple[str | None, Mapping[str, int]]] | None = None,
) -> CatalogueResult:
    """Add the SKUs that are missing, in the caller's transaction: `products` maps each plain
    SKU to its title, `bundles` each bundle SKU to (title, {component SKU: units per set})."""
    bundles = bundles or {}
    for sku, (_, components) in bundles.items():
        if not components:
            raise CatalogueError(f"bundle {sku!r} has no components")
        for component, units in components.items():
            if units < 1:
                raise CatalogueError(f"bundle {sku!r}: {units} units of {component!r}")
            if component in bundles:
                raise CatalogueError(f"bundle {sku!r}: component {component!r} is a bundle")
    wanted = sorted({*products, *bundles})
    existing = set(session.scalars(select(Sku.sku).where(Sku.sku.in_(wanted))))
    added = [sku for sku in sorted(products) if sku not in existing]
    session.add_all(Sku(sku=sku, title=products[sku]) for sku in added)
    new_bundles = [sku for sku in sorted(bundles) if sku not in existing]
    session.add_all(Sku(sku=sku, title=bundles[sku][0], is_bundle=True) for sku in new_bundles)
    session.flush()  # components reference the SKU rows
    known = set(session.scalars(select(Sku.sku).where(Sku.sku.in_(_components(bundles)))))
    for sku in new_bundles:
        components = bundles[sku][1]
        missing = sorted(set(components) - known)
        if missing:
            raise CatalogueError(f"bundle {sku!r}: unknown component {missing[0]!r}")
        session.add_all(
            BundleComponent(bundle_sku=sku, component_sku=component, quantity=units)
            for component, units in sorted(components.items())
        )
    return CatalogueResult(tuple(added), tuple(new_bundles))


def _components(bundles: Mapping[str, tuple[str | None, Mapping[str, int]]]) -> list[str]:
    return sorted({component for _, parts in bundles.values() for component in parts})
