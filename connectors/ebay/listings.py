"""Reading the seller's listings in both worlds: every listing for binding, and what some show.

Inventory-API listings are read first (getInventoryItems, then each item's offers on the
channel's marketplace); Trading listings come from GetMyeBaySelling's active list. A listing
published through the Inventory API shows in GetMyeBaySelling too, under its listing id; it is
left out there, so each listing is bound once, in the world that can revise it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from connectors.base import ChannelListing, InvalidValueError
from connectors.ebay import const, trading_xml
from connectors.ebay.client import EbayRestClient, answer_shape, json_body
from connectors.ebay.inventory import listing_from_item, parse_listing, quantity_of_item
from connectors.ebay.trading import TradingClient
from connectors.errors import NotFoundError, PermanentError


class ListingReader:
    """One seller's listings, in both stock worlds."""

    def __init__(
        self,
        *,
        rest: EbayRestClient,
        trading: TradingClient,
        marketplace_id: str,
        default_world: str,
    ) -> None:
        self._rest = rest
        self._trading = trading
        self._channel = rest.channel
        self._marketplace_id = marketplace_id
        self._default_world = default_world
        self.ending_at_zero: tuple[str, ...] = ()  # listings seen without out-of-stock control

    async def all(self) -> list[ChannelListing]:
        """Every listing of the account: Inventory-API items with offers, then Trading ones."""
        return [listing async for page in self.pages() for listing in page]

    async def pages(self) -> AsyncIterator[list[ChannelListing]]:
        """Every listing of the account a page at a time: Inventory-API items with offers, then
        Trading ones. Only the ids of listings published through the Inventory API are kept
        across pages (to leave them out of the Trading pass), never the listings themselves."""
        published: set[str] = set()
        async for page in self.inventory_pages():
            published.update(
                str(listing_id)
                for listing in page
                for listing_id in listing.extra.get("listing_ids") or ()
            )
            yield page
        ending: list[str] = []
        async for found in self.trading_pages():
            page = [listing for listing in found if listing.extra.get("item_id") not in published]
            ending.extend(
                listing.listing_ref for listing in page if listing.extra.get("ends_at_zero")
            )
            yield page
        self.ending_at_zero = tuple(ending)

    async def inventory_listings(self) -> list[ChannelListing]:
        """The seller's inventory items, each with its published offers."""
        return [listing async for page in self.inventory_pages() for listing in page]

    async def inventory_pages(self) -> AsyncIterator[list[ChannelListing]]:
        """The seller's inventory items with their published offers, a page at a time."""
        offset = 0
        while True:
            body = await self._rest.get_json(
                const.INVENTORY_ITEMS_PATH,
                api=const.API_INVENTORY,
                operation="getInventoryItems",
                params={"limit": const.INVENTORY_ITEMS_PAGE, "offset": offset},
            )
            with answer_shape(self._channel, "getInventoryItems"):
                items = [i for i in body.get("inventoryItems") or () if isinstance(i, Mapping)]
                total = body.get("total")
            page: list[ChannelListing] = []
            for item in items:
                offers = await self._offers(str(item.get("sku") or ""))
                listing = listing_from_item(item, offers, self._marketplace_id)
                if listing is not None:
                    page.append(listing)
            offset += len(items)
            if page:
                yield page
            if not items or not isinstance(total, int) or offset >= total:
                return

    async def _offers(self, sku: str) -> list[Mapping[str, Any]]:
        if not sku:
            return []
        try:
            body = await self._rest.get_json(
                const.OFFERS_PATH,
                api=const.API_INVENTORY,
                operation="getOffers",
                params={"sku": sku, "marketplace_id": self._marketplace_id},
            )
        except NotFoundError:
            return []  # eBay answers 404 for an item without offers
        with answer_shape(self._channel, "getOffers"):
            return [offer for offer in body.get("offers") or () if isinstance(offer, Mapping)]

    async def trading_listings(self, wanted: set[str] | None = None) -> list[ChannelListing]:
        """The active Trading listings (one per variation), page by page; with `wanted`, only
        those in it, stopping once every one was seen."""
        listings: list[ChannelListing] = []
        missing = set(wanted) if wanted is not None else None
        async for found in self.trading_pages():
            if missing is None:
                listings.extend(found)
                continue
            listings.extend(listing for listing in found if listing.listing_ref in missing)
            missing.difference_update(listing.listing_ref for listing in found)
            if not missing:
                break
        return listings

    async def trading_pages(self) -> AsyncIterator[list[ChannelListing]]:
        """The active Trading listings (one per variation), one GetMyeBaySelling page at a time."""
        page = 1
        while True:
            answer = await self._trading.call(
                "GetMyeBaySelling", trading_xml.my_selling_request(page)
            )
            if answer.is_failure:
                raise self._trading_error(answer)
            found, pages = trading_xml.listings_from_my_selling(answer)
            yield found
            if page >= pages:
                return
            page += 1

    def _trading_error(self, answer: trading_xml.TradingAnswer) -> Exception:
        reason = answer.summary()
        return PermanentError(reason, reason=reason, channel=self._channel, operation=answer.verb)

    async def quantities(self, refs: Sequence[str]) -> dict[str, int]:
        """What eBay shows now for these listings (unknown or unreadable ones left out)."""
        by_sku: dict[str, list[str]] = {}
        trading: dict[str, str] = {}  # canonical trading ref -> the ref asked for
        for ref in dict.fromkeys(refs):
            try:
                listing = parse_listing(ref, default_world=self._default_world)
            except InvalidValueError:
                continue
            if listing.world == const.STOCK_API_INVENTORY:
                by_sku.setdefault(str(listing.sku), []).append(ref)
            else:
                canonical = trading_xml.trading_listing_ref(str(listing.item_id), listing.sku)
                trading[canonical] = ref
        shown: dict[str, int] = {}
        skus = sorted(by_sku)
        for start in range(0, len(skus), const.BULK_GET_BATCH):
            chunk = skus[start : start + const.BULK_GET_BATCH]
            response = await self._rest.call(
                "POST",
                const.BULK_GET_ITEMS_PATH,
                api=const.API_INVENTORY,
                operation="bulkGetInventoryItem",
                is_resendable=True,
                body={"requests": [{"sku": sku} for sku in chunk]},
            )
            body = json_body(response, channel=self._channel, operation="bulkGetInventoryItem")
            for entry in body.get("responses") or ():
                if not isinstance(entry, Mapping) or entry.get("statusCode") != 200:
                    continue
                item = entry.get("inventoryItem")
                quantity = quantity_of_item(item) if isinstance(item, Mapping) else None
                if quantity is not None:
                    for ref in by_sku.get(str(entry.get("sku")), ()):
                        shown[ref] = quantity
        if trading:
            for found in await self.trading_listings(set(trading)):
                asked = trading.get(found.listing_ref)
                if asked is not None and found.quantity is not None:
                    shown[asked] = found.quantity
        return shown
