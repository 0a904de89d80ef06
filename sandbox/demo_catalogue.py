"""The demo catalogue: what the seller of `channel-sync demo` sells, and what every sandbox
marketplace of `channel-sync sandbox` lists.

About fifty SKUs: plain products with their units on hand (a few with only 1 to 3 units, so that
contention shows), and bundles made of them, whose quantity on a marketplace derives from their
components. The same figures seed the sandboxes and the store, so that the daemon starts with
nothing to repair.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Product:
    """A plain SKU: units on hand at the demo's one location, and its price."""

    sku: str
    title: str
    units: int
    price: Decimal


@dataclass(frozen=True)
class Bundle:
    """A SKU sold as a set: `components` maps each component SKU to the units one set takes."""

    sku: str
    title: str
    components: Mapping[str, int]
    price: Decimal


@dataclass(frozen=True)
class Catalogue:
    """Products and bundles, and what each marketplace shows of them at the start."""

    products: tuple[Product, ...]
    bundles: tuple[Bundle, ...] = ()

    @property
    def skus(self) -> list[str]:
        """Every SKU a marketplace lists, products first."""
        return [p.sku for p in self.products] + [b.sku for b in self.bundles]

    def units(self) -> dict[str, int]:
        """Units on hand per plain SKU."""
        return {p.sku: p.units for p in self.products}

    def listed(self) -> list[tuple[str, int, Decimal]]:
        """(sku, quantity shown, price) of every listing: a bundle shows the sets its
        components make."""
        units = self.units()
        shown = [(p.sku, p.units, p.price) for p in self.products]
        for bundle in self.bundles:
            sets = min(units[sku] // per_set for sku, per_set in bundle.components.items())
            shown.append((bundle.sku, sets, bundle.price))
        return shown


def _products() -> tuple[Product, ...]:
    rows: list[tuple[str, str, int, str]] = [
        ("MUG-BLUE", "Enamel mug, blue", 25, "12.50"),
        ("MUG-RED", "Enamel mug, red", 18, "12.50"),
        ("MUG-GREEN", "Enamel mug, green", 3, "12.50"),
        ("MUG-BLACK", "Enamel mug, black", 40, "12.50"),
        ("MUG-WHITE", "Enamel mug, white", 12, "12.50"),
        ("POSTER-A1", "Mountain poster, A1", 6, "24.00"),
        ("POSTER-A2", "Mountain poster, A2", 10, "16.00"),
        ("POSTER-A3", "Mountain poster, A3", 30, "8.00"),
        ("CANDLE-CEDAR", "Soy candle, cedar", 15, "14.00"),
        ("CANDLE-FIG", "Soy candle, fig", 2, "14.00"),
        ("CANDLE-SAGE", "Soy candle, sage", 9, "14.00"),
        ("NOTEBOOK-DOT", "Notebook, dotted", 50, "9.90"),
        ("NOTEBOOK-LINE", "Notebook, lined", 35, "9.90"),
        ("NOTEBOOK-PLAIN", "Notebook, plain", 1, "9.90"),
        ("PEN-BRASS", "Brass pen", 2, "39.00"),
        ("PEN-STEEL", "Steel pen", 20, "29.00"),
        ("TOTE-NATURAL", "Canvas tote, natural", 22, "18.00"),
        ("TOTE-BLACK", "Canvas tote, black", 3, "18.00"),
        ("CAP-OLIVE", "Cotton cap, olive", 8, "21.00"),
        ("CAP-NAVY", "Cotton cap, navy", 14, "21.00"),
        ("SOCKS-STRIPE", "Wool socks, striped", 45, "11.00"),
        ("SOCKS-PLAIN", "Wool socks, plain", 60, "10.00"),
        ("SCARF-GREY", "Merino scarf, grey", 1, "49.00"),
        ("SCARF-RUST", "Merino scarf, rust", 5, "49.00"),
        ("BLANKET-WOOL", "Wool blanket", 2, "129.00"),
        ("PLANT-POT-S", "Clay pot, small", 28, "7.50"),
        ("PLANT-POT-M", "Clay pot, medium", 16, "11.50"),
        ("PLANT-POT-L", "Clay pot, large", 3, "19.50"),
        ("SEEDS-BASIL", "Seeds, basil", 80, "3.20"),
        ("SEEDS-MINT", "Seeds, mint", 70, "3.20"),
        ("TEA-GREEN", "Loose tea, green", 24, "8.90"),
        ("TEA-BLACK", "Loose tea, black", 26, "8.90"),
        ("TEA-CHAI", "Loose tea, chai", 2, "9.90"),
        ("COFFEE-1KG", "Coffee beans, 1 kg", 12, "27.00"),
        ("COFFEE-250G", "Coffee beans, 250 g", 33, "8.50"),
        ("SOAP-LAVENDER", "Hand soap, lavender", 40, "6.00"),
        ("SOAP-CITRUS", "Hand soap, citrus", 38, "6.00"),
        ("TOWEL-LINEN", "Linen towel", 11, "16.00"),
        ("APRON-DENIM", "Denim apron", 1, "45.00"),
        ("BOARD-OAK", "Oak chopping board", 7, "35.00"),
        ("KNIFE-PARING", "Paring knife", 9, "25.00"),
        ("PUZZLE-500", "Jigsaw, 500 pieces", 13, "19.00"),
        ("PUZZLE-1000", "Jigsaw, 1000 pieces", 2, "24.00"),
        ("CARDS-BIRTHDAY", "Card, birthday", 100, "3.50"),
        ("CARDS-THANKS", "Card, thank you", 90, "3.50"),
    ]
    return tuple(Product(sku, title, units, Decimal(price)) for sku, title, units, price in rows)


DEMO_CATALOGUE = Catalogue(
    products=_products(),
    bundles=(
        Bundle("GIFT-MUG-PAIR", "Two blue mugs", {"MUG-BLUE": 2}, Decimal("23.00")),
        Bundle(
            "GIFT-TEA-SET",
            "Tea trio",
            {"TEA-GREEN": 1, "TEA-BLACK": 1, "TEA-CHAI": 1},
            Decimal("25.00"),
        ),
        Bundle(
            "GIFT-DESK",
            "Notebook and brass pen",
            {"NOTEBOOK-DOT": 1, "PEN-BRASS": 1},
            Decimal("45.00"),
        ),
        Bundle(
            "GIFT-GARDEN",
            "Pot and basil seeds",
            {"PLANT-POT-S": 1, "SEEDS-BASIL": 2},
            Decimal("12.50"),
        ),
        Bundle(
            "GIFT-COZY",
            "Blanket and socks",
            {"BLANKET-WOOL": 1, "SOCKS-STRIPE": 2},
            Decimal("145.00"),
        ),
    ),
)
"""The catalogue `channel-sync demo` loads and `channel-sync sandbox` lists (50 SKUs)."""
