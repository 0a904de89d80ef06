"""Reading orders from the Admin API to the end: a page of ids, then each order in full.

A whole page of 250 orders with their lines and fulfilments would ask for far more than Shopify's
1000-point limit for one query, so a poll page is the ids alone (`sortKey: UPDATED_AT`, oldest
first) and each order comes by its own query, a few at a time. That query takes what most orders
have (50 lines, 10 fulfilments of 25 lines); the rare bigger order is completed by follow-ups.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import InvalidOperation
from typing import Any

from connectors.base import InvalidValueError, Order, OrderPage, OrderVersion, OrderVersionPage
from connectors.errors import RetryableError
from connectors.shopify import const, mapper
from connectors.shopify.client import ShopifyClient, answer_shape

log = logging.getLogger(__name__)

MALFORMED = (InvalidValueError, InvalidOperation, KeyError, TypeError, ValueError, IndexError)
"""What a mapper raises on an order it cannot read."""


def malformed_reason(err: Exception) -> str:
    """What is wrong with a record, without quoting it (it holds buyer data)."""
    if isinstance(err, KeyError):
        return f"missing field {err.args[0]!r}"
    if isinstance(err, InvalidValueError):
        return str(err)
    return type(err).__name__


def updated_since_query(when: datetime) -> str:
    """Shopify's search syntax for "updated at or after `when`" (whole seconds, UTC)."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return f"updated_at:>='{aware.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}'"


class OrderReader:
    """Reads one shop's orders, whole."""

    def __init__(self, client: ShopifyClient) -> None:
        self._client = client
        self._channel = client.channel

    async def versions(self, updated_since: datetime, cursor: str | None) -> OrderVersionPage:
        """One page of ids with their change times (`mapper.version_time`: a cancelled order's
        at the end of its second), oldest first: what a poll page reads before any order."""
        data = await self._client.execute(
            const.ORDER_IDS,
            {
                "first": const.ORDERS_PAGE,
                "after": cursor,
                "query": updated_since_query(updated_since),
            },
        )
        with answer_shape(self._channel, const.ORDER_IDS.name):
            connection = data["orders"]
            try:
                versions = [
                    OrderVersion(
                        str(node["id"]),
                        mapper.version_time(
                            mapper.parse_time(node["updatedAt"], "updatedAt"),
                            mapper.parse_time(node["cancelledAt"], "cancelledAt")
                            if node.get("cancelledAt")
                            else None,
                        ),
                    )
                    for node in connection["nodes"]
                ]
            except InvalidValueError as err:
                raise RetryableError(
                    f"unexpected answer shape ({err})",
                    channel=self._channel,
                    operation=const.ORDER_IDS.name,
                ) from err
            page_info = connection["pageInfo"]
            next_cursor = page_info["endCursor"] if page_info["hasNextPage"] else None
        return OrderVersionPage(versions, str(next_cursor) if next_cursor else None)

    async def page(self, updated_since: datetime, cursor: str | None) -> OrderPage:
        """One poll page: orders updated at or after `updated_since`, a malformed one logged (its
        id and what is wrong) and left out, one deleted meanwhile skipped."""
        listed = await self.versions(updated_since, cursor)
        ids = [version.external_id for version in listed.versions]
        next_cursor = listed.next_cursor
        slots = asyncio.Semaphore(const.DETAIL_CONCURRENCY)

        async def detail(order_id: str) -> Order | None:
            async with slots:
                node = await self.node(order_id)
            if node is None:
                return None
            try:
                return mapper.order_from_graphql(node)
            except MALFORMED as err:
                log.warning(
                    "channel %s: order %s left out, malformed: %s",
                    self._channel,
                    order_id[:80],
                    malformed_reason(err),
                )
                return None

        found = await asyncio.gather(*(detail(order_id) for order_id in ids))
        return OrderPage(
            orders=tuple(order for order in found if order is not None),
            next_cursor=str(next_cursor) if next_cursor else None,
        )

    async def node(self, order_id: str) -> dict[str, Any] | None:
        """An Order node with its lines and fulfilments read to the end; None if there is none."""
        data = await self._client.execute(const.ORDER, {"id": order_id})
        with answer_shape(self._channel, const.ORDER.name):
            node = data["order"]
            if node is None:
                return None
            node = dict(node)
            lines = node["lineItems"]
            while lines["pageInfo"]["hasNextPage"]:
                more = await self._client.execute(
                    const.ORDER_LINES, {"id": order_id, "after": lines["pageInfo"]["endCursor"]}
                )
                page = more["order"]["lineItems"]
                lines = {"pageInfo": page["pageInfo"], "nodes": lines["nodes"] + page["nodes"]}
            node["lineItems"] = lines
            fulfillments = list(node.get("fulfillments") or ())
            count = (node.get("fulfillmentsCount") or {}).get("count")
            if isinstance(count, int) and count > len(fulfillments):
                known = {f["id"] for f in fulfillments}
                more = await self._client.execute(const.ORDER_FULFILLMENT_IDS, {"id": order_id})
                for item in more["order"]["fulfillments"]:
                    if item["id"] not in known:
                        fulfillments.append(await self._fulfillment(str(item["id"]), None))
            node["fulfillments"] = [
                await self._fulfillment(str(f["id"]), f)
                if f["fulfillmentLineItems"]["pageInfo"]["hasNextPage"]
                else f
                for f in fulfillments
            ]
            return node

    async def _fulfillment(
        self, fulfillment_id: str, first: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """A fulfilment with all its line items (continuing `first` where it stopped)."""
        node: dict[str, Any] | None = dict(first) if first is not None else None
        after = first["fulfillmentLineItems"]["pageInfo"]["endCursor"] if first else None
        while True:
            data = await self._client.execute(
                const.FULFILLMENT, {"id": fulfillment_id, "after": after}
            )
            page_node = data["fulfillment"]
            items = page_node["fulfillmentLineItems"]
            if node is None:
                node = dict(page_node)
            else:
                node["fulfillmentLineItems"] = {
                    "pageInfo": items["pageInfo"],
                    "nodes": list(node["fulfillmentLineItems"]["nodes"]) + list(items["nodes"]),
                }
            if not items["pageInfo"]["hasNextPage"]:
                return node
            after = items["pageInfo"]["endCursor"]
