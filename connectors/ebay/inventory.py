"""Listing refs of both stock worlds, and pure builders and readers of the Inventory API's JSON.

A listing ref names its world, so a push never has to guess:
- `trading:ITEMID` (a single-variation Trading listing) or `trading:ITEMID:SKU` (one variation of
  a multi-variation listing, revised by its SKU);
- `inventory:SKU` (an Inventory-API inventory item; its published offers ride in the listing's
  extra as `offer_ids`).
A bare ref (bound by hand) takes its world from the listing's extra `stock_api`, else from the
channel file's `stock_api`: a Trading ref is then `ITEMID` or `ITEMID:SKU`, an Inventory one the
SKU itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.base import ChannelListing, InvalidValueError, PushOutcome
from connectors.ebay import const

_MESSAGE_MAX = 300


@dataclass(frozen=True)
class StockListing:
    """Where one listing's quantity is set."""

    world: str  # const.STOCK_API_TRADING or const.STOCK_API_INVENTORY
    item_id: str | None = None  # Trading ItemID
    sku: str | None = None  # the variation's SKU (Trading) or the inventory item's SKU
    offer_ids: tuple[str, ...] = ()

    @property
    def revision_key(self) -> str:
        """What eBay counts revisions against: the Trading item (all its variations), or the
        inventory item."""
        if self.world == const.STOCK_API_TRADING:
            return f"{const.STOCK_API_TRADING}:{self.item_id}"
        return f"{const.STOCK_API_INVENTORY}:{self.sku}"


def inventory_listing_ref(sku: str) -> str:
    """Our listing ref of an Inventory-API inventory item."""
    return f"{const.STOCK_API_INVENTORY}:{sku}"


def _trading(rest: str, ref: str) -> StockListing:
    item_id, _, sku = rest.partition(":")
    if not item_id.isdigit():
        raise InvalidValueError(f"listing {ref[:120]!r}: a Trading ItemID is a number")
    return StockListing(const.STOCK_API_TRADING, item_id=item_id, sku=sku or None)


def parse_listing(
    ref: str, extra: Mapping[str, Any] | None = None, *, default_world: str
) -> StockListing:
    """Where `ref` is revised; InvalidValueError when it names nothing eBay could take."""
    extra = extra or {}
    world, separator, rest = ref.partition(":")
    if separator and world in (const.STOCK_API_TRADING, const.STOCK_API_INVENTORY):
        pass
    else:
        named = extra.get("stock_api")
        world = named if named in (const.STOCK_API_TRADING, const.STOCK_API_INVENTORY) else ""
        world, rest = world or default_world, ref
    if world == const.STOCK_API_TRADING:
        return _trading(rest, ref)
    if not rest.strip():
        raise InvalidValueError(f"listing {ref[:120]!r}: an inventory listing needs its SKU")
    offers = extra.get("offer_ids")
    offer_ids = tuple(str(o) for o in offers if o) if isinstance(offers, list | tuple) else ()
    return StockListing(const.STOCK_API_INVENTORY, sku=rest, offer_ids=offer_ids)


def bulk_update_body(entries: Sequence[tuple[StockListing, int]]) -> dict[str, Any]:
    """bulkUpdatePriceQuantity's body: each inventory item's quantity, and its offers' too."""
    requests = []
    for listing, quantity in entries:
        request: dict[str, Any] = {
            "sku": listing.sku,
            "shipToLocationAvailability": {"quantity": quantity},
        }
        if listing.offer_ids:
            request["offers"] = [
                {"offerId": offer_id, "availableQuantity": quantity}
                for offer_id in listing.offer_ids
            ]
        requests.append(request)
    return {"requests": requests}


def _message(entry: Mapping[str, Any]) -> str:
    for error in entry.get("errors") or ():
        if isinstance(error, Mapping):
            code = error.get("errorId")
            text = " ".join(str(error.get("message") or "refused").split())
            return (f"{code}: {text}" if code is not None else text)[:_MESSAGE_MAX]
    return f"HTTP {entry.get('statusCode')}"


def read_bulk_answer(
    body: Mapping[str, Any], skus: Sequence[str]
) -> list[tuple[PushOutcome, str | None]]:
    """Per SKU, in order: applied when every answer about it (the item's, each offer's) is 2xx,
    refused on a 4xx, tried again on a 5xx or when eBay said nothing about it."""
    by_sku: dict[str, list[Mapping[str, Any]]] = {}
    for entry in body.get("responses") or ():
        if isinstance(entry, Mapping) and entry.get("sku") is not None:
            by_sku.setdefault(str(entry["sku"]), []).append(entry)
    results: list[tuple[PushOutcome, str | None]] = []
    for sku in skus:
        entries = by_sku.get(sku)
        if not entries:
            results.append((PushOutcome.RETRY, "eBay did not answer for this SKU"))
            continue
        failed = [(e, _status(e)) for e in entries if not 200 <= _status(e) < 300]
        refused = [e for e, status in failed if 400 <= status < 500]
        if not failed:
            results.append((PushOutcome.APPLIED, None))
        elif refused:
            results.append((PushOutcome.REJECTED, _message(refused[0])))
        else:
            results.append((PushOutcome.RETRY, _message(failed[0][0])))
    return results


def _status(entry: Mapping[str, Any]) -> int:
    status = entry.get("statusCode")
    return status if isinstance(status, int) and not isinstance(status, bool) else 0


def quantity_of_item(item: Mapping[str, Any]) -> int | None:
    """An inventory item's ship-to-location quantity."""
    availability = item.get("availability")
    ship = (
        availability.get("shipToLocationAvailability")
        if isinstance(availability, Mapping)
        else None
    )
    quantity = ship.get("quantity") if isinstance(ship, Mapping) else None
    return quantity if isinstance(quantity, int) and not isinstance(quantity, bool) else None


def listing_from_item(
    item: Mapping[str, Any], offers: Sequence[Mapping[str, Any]], marketplace_id: str
) -> ChannelListing | None:
    """An inventory item with its published offers on the channel's marketplace as a listing
    (None when it has no SKU)."""
    sku = item.get("sku")
    if not isinstance(sku, str) or not sku:
        return None
    published = [
        offer
        for offer in offers
        if offer.get("status", "PUBLISHED") == "PUBLISHED"
        and offer.get("marketplaceId", marketplace_id) == marketplace_id
        and offer.get("offerId")
    ]
    listing_ids = [
        str(offer["listing"]["listingId"])
        for offer in published
        if isinstance(offer.get("listing"), Mapping) and offer["listing"].get("listingId")
    ]
    return ChannelListing(
        listing_ref=inventory_listing_ref(sku),
        sku=sku,
        quantity=quantity_of_item(item),
        extra={
            "stock_api": const.STOCK_API_INVENTORY,
            "offer_ids": [str(offer["offerId"]) for offer in published],
            "listing_ids": listing_ids,
        },
    )
