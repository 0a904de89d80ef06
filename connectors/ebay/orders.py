"""Reading orders from the Sell Fulfillment API: getOrders pages, getOrder, and the shipping
fulfilments of orders that have some.

A poll asks `filter=lastmodifieddate:[SINCE..]` (inclusive) with SINCE a little before the
checkpoint, since eBay's order search lags its writes; 200 orders a page, offset pagination to
the end (the cursor is the next offset; the engine keeps the position fixed until the last page,
so every page of one poll asks the same filter). An order whose fulfilment hrefs are not empty
has parcels: they are read too, so that its lines' shipped units and tracking are known.

The poller lists versions first (`versions`: the same pages, no parcels read) and reads in full
only the orders the store lacks at that version (`listed`: the order from its page, plus its
parcels). A reconcile of a day's shipped orders then costs its getOrders pages, not a
getShippingFulfillments per order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import InvalidOperation
from typing import Any

from connectors.base import (
    InvalidValueError,
    Order,
    OrderPage,
    OrderVersion,
    OrderVersionPage,
)
from connectors.ebay import const, mapper
from connectors.ebay.client import EbayRestClient, answer_shape
from connectors.errors import NotFoundError, PermanentError, SkipRecordError

log = logging.getLogger(__name__)

MALFORMED = (InvalidValueError, InvalidOperation, KeyError, TypeError, ValueError, IndexError)
"""What the mapper raises on an order it cannot read."""


def malformed_reason(err: Exception) -> str:
    """What is wrong with a record, without quoting it (it holds buyer data)."""
    if isinstance(err, KeyError):
        return f"missing field {err.args[0]!r}"
    if isinstance(err, InvalidValueError):
        return str(err)
    return type(err).__name__


def ebay_time(when: datetime) -> str:
    """eBay's timestamp format: UTC with milliseconds, `2026-03-01T10:00:00.123Z`."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    utc = aware.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def modified_since_filter(when: datetime) -> str:
    """getOrders' filter for "last modified at or after `when`" (an open-ended range)."""
    return f"lastmodifieddate:[{ebay_time(when)}..]"


class OrderReader:
    """Reads one seller's orders, with their parcels."""

    def __init__(
        self,
        client: EbayRestClient,
        *,
        overlap_s: float = const.ORDER_OVERLAP_S,
        page_size: int = const.ORDERS_PAGE,
    ) -> None:
        self._client = client
        self._channel = client.channel
        self._overlap = timedelta(seconds=overlap_s)
        self._page_size = page_size
        self._listed: OrderedDict[str, tuple[datetime, Mapping[str, Any]]] = OrderedDict()

    def _offset(self, cursor: str | None) -> int:
        if cursor is None:
            return 0
        if not cursor.isdigit():
            raise PermanentError(
                "not an eBay getOrders offset", channel=self._channel, operation="getOrders"
            )
        return int(cursor)

    async def _listing(
        self, updated_since: datetime, cursor: str | None
    ) -> tuple[list[Mapping[str, Any]], str | None]:
        """One getOrders page (modified at or after `updated_since`, less the overlap): its
        orders as eBay gave them, and the next page's cursor."""
        offset = self._offset(cursor)
        body = await self._client.get_json(
            const.ORDERS_PATH,
            api=const.API_FULFILLMENT,
            operation="getOrders",
            params={
                "filter": modified_since_filter(updated_since - self._overlap),
                "limit": self._page_size,
                "offset": offset,
            },
        )
        with answer_shape(self._channel, "getOrders"):
            raws = [raw for raw in body.get("orders") or () if isinstance(raw, Mapping)]
            total = body.get("total")
            has_more = bool(raws) and (
                body.get("next") is not None
                or (isinstance(total, int) and offset + len(raws) < total)
            )
        return raws, str(offset + self._page_size) if has_more else None

    def _left_out(self, raw: Mapping[str, Any], err: Exception) -> None:
        log.warning(
            "channel %s: order %s left out, malformed: %s",
            self._channel,
            str(raw.get("orderId"))[:80],
            malformed_reason(err),
        )

    async def page(self, updated_since: datetime, cursor: str | None) -> OrderPage:
        """One poll page: orders modified at or after `updated_since` (less the overlap), a
        malformed one logged (its id and what is wrong) and left out."""
        raws, next_cursor = await self._listing(updated_since, cursor)
        slots = asyncio.Semaphore(const.DETAIL_CONCURRENCY)

        async def read(raw: Mapping[str, Any]) -> Order | None:
            try:
                async with slots:
                    parcels = await self.parcels_of(raw)
                return mapper.order_from_ebay(raw, parcels)
            except MALFORMED as err:
                self._left_out(raw, err)
                return None

        found = await asyncio.gather(*(read(raw) for raw in raws))
        return OrderPage(
            orders=tuple(order for order in found if order is not None),
            next_cursor=next_cursor,
        )

    async def versions(self, updated_since: datetime, cursor: str | None) -> OrderVersionPage:
        """The page `page` would give, as versions (`lastModifiedDate`, which eBay moves on
        every change, a shipment included), reading no parcels. The orders listed are held
        (the last `LISTED_HELD`) so that `listed` reads only the parcels of one the store lacks."""
        raws, next_cursor = await self._listing(updated_since, cursor)
        versions = []
        for raw in raws:
            try:
                version = OrderVersion(
                    external_id=str(raw["orderId"]),
                    updated_at=mapper.parse_time(raw["lastModifiedDate"], "lastModifiedDate"),
                )
            except MALFORMED as err:
                self._left_out(raw, err)
                continue
            self._listed[version.external_id] = (version.updated_at, raw)
            self._listed.move_to_end(version.external_id)
            versions.append(version)
        while len(self._listed) > const.LISTED_HELD:
            self._listed.popitem(last=False)
        return OrderVersionPage(versions=versions, next_cursor=next_cursor)

    async def listed(self, version: OrderVersion) -> Order:
        """An order `versions` listed: from the page it came on when held there at that
        version, with its parcels read; read afresh otherwise."""
        held = self._listed.pop(version.external_id, None)
        if held is None or held[0] != version.updated_at:
            return await self.order(version.external_id)
        return await self._complete(held[1], "getOrders")

    async def raw_order(self, order_id: str, *, is_priority: bool = False) -> dict[str, Any]:
        """getOrder's JSON; NotFoundError when the seller has no such order."""
        if not order_id or "/" in order_id or len(order_id) > 100:
            raise NotFoundError("not an eBay order id", channel=self._channel, operation="getOrder")
        return await self._client.get_json(
            const.ORDER_PATH.format(order_id=order_id),
            api=const.API_FULFILLMENT,
            operation="getOrder",
            is_priority=is_priority,
        )

    async def order(self, order_id: str) -> Order:
        """One order with its parcels; SkipRecordError when it cannot be read."""
        return await self._complete(await self.raw_order(order_id), "getOrder")

    async def _complete(self, raw: Mapping[str, Any], operation: str) -> Order:
        """The order eBay gave (by `operation`) with its parcels read; SkipRecordError when it
        cannot be read."""
        try:
            return mapper.order_from_ebay(raw, await self.parcels_of(raw))
        except MALFORMED as err:
            raise SkipRecordError(
                f"order is malformed: {malformed_reason(err)}",
                channel=self._channel,
                operation=operation,
            ) from err

    async def parcels_of(self, raw: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The shipping fulfilments of an order that has some (none read otherwise)."""
        if not raw.get("fulfillmentHrefs"):
            return []
        return await self.fulfillments(str(raw["orderId"]))

    async def fulfillments(
        self, order_id: str, *, is_priority: bool = False
    ) -> list[dict[str, Any]]:
        """getShippingFulfillments: every package of the order."""
        body = await self._client.get_json(
            const.SHIPPING_FULFILLMENTS_PATH.format(order_id=order_id),
            api=const.API_FULFILLMENT,
            operation="getShippingFulfillments",
            is_priority=is_priority,
        )
        with answer_shape(self._channel, "getShippingFulfillments"):
            return [dict(f) for f in body.get("fulfillments") or () if isinstance(f, Mapping)]
