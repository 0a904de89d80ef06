"""The reference connector: the Connector protocol over the reference marketplace's HTTP API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import InvalidOperation

import httpx

from connectors.base import (
    CancelRequest,
    Capabilities,
    ChannelListing,
    FulfillmentRequest,
    InvalidValueError,
    Order,
    OrderPage,
    StockPushResult,
    StockTarget,
)
from connectors.errors import PermanentError, UncertainOutcomeError
from connectors.reference import mapper
from connectors.reference.client import ReferenceClient, Sleep
from connectors.reference.const import ATTEMPTS, MAX_STOCK_READ

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReferenceSettings:
    """What the connector needs of a `kind = "reference"` channel file."""

    base_url: str
    token: str
    capabilities: Capabilities
    timeout_s: float = 10.0
    page_size: int = 50

    def __repr__(self) -> str:
        return f"ReferenceSettings(base_url={self.base_url!r}, token='**********', ...)"


class ReferenceConnector:
    """One channel of the reference marketplace, spoken to over HTTP."""

    def __init__(
        self,
        name: str,
        settings: ReferenceSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        attempts: int = ATTEMPTS,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name = name
        self.capabilities = settings.capabilities
        self.page_size = settings.page_size
        self._client = ReferenceClient(
            channel=name,
            base_url=settings.base_url,
            token=settings.token,
            timeout_s=settings.timeout_s,
            max_in_flight=max(1, settings.capabilities.max_in_flight),
            transport=transport,
            attempts=attempts,
            sleep=sleep,
        )

    async def check_connection(self) -> None:
        """Prove the token works; AuthError when it does not."""
        await self._client.get_account()

    async def fetch_orders(self, updated_since: datetime, cursor: str | None) -> OrderPage:
        """Orders updated at or after `updated_since`, oldest first; a malformed record is
        logged (its id and what is wrong, never its content) and left out of the page."""
        raw = await self._client.list_orders(updated_since, cursor, self.page_size)
        orders = []
        for record in raw["orders"]:
            try:
                orders.append(mapper.order_from_raw(record))
            except (InvalidValueError, InvalidOperation, KeyError, TypeError, ValueError) as err:
                log.warning(
                    "channel %s: order %s left out, malformed: %s",
                    self.name,
                    str(record.get("id", "(no id)"))[:64] if isinstance(record, dict) else "?",
                    _reason(err),
                )
        return OrderPage(orders=tuple(orders), next_cursor=raw.get("next_cursor") or None)

    async def fetch_order(self, external_id: str) -> Order:
        """One order by the channel's id; NotFoundError if there is none."""
        return mapper.order_from_raw(await self._client.get_order(external_id))

    async def push_stock(self, targets: Sequence[StockTarget]) -> Sequence[StockPushResult]:
        """Set quantities in one batch (with `expected` where compare-and-swap is on)."""
        if len(targets) > self.capabilities.max_stock_batch:
            raise PermanentError(
                f"batch of {len(targets)} exceeds {self.capabilities.max_stock_batch}",
                channel=self.name,
                operation="set_stock",
            )
        if not targets:
            return []
        items = mapper.stock_items(
            targets, compare_and_swap=self.capabilities.supports_compare_and_swap
        )
        raw = await self._client.set_stock(items)
        return mapper.push_results(targets, raw["results"])

    async def read_stock(self, listing_refs: Sequence[str]) -> Mapping[str, int]:
        """What the channel shows now for these listings (unknown ones are left out)."""
        shown: dict[str, int] = {}
        refs = list(dict.fromkeys(listing_refs))
        for start in range(0, len(refs), MAX_STOCK_READ):
            raw = await self._client.get_stock(refs[start : start + MAX_STOCK_READ])
            shown.update({str(ref): int(qty) for ref, qty in raw["stock"].items()})
        return shown

    async def list_listings(self) -> Sequence[ChannelListing]:
        """Every listing of the account, page after page."""
        return [listing async for page in self.listing_pages() for listing in page]

    async def listing_pages(self) -> AsyncIterator[Sequence[ChannelListing]]:
        """The account's listings, one API page at a time."""
        cursor: str | None = None
        while True:
            raw = await self._client.list_listings(cursor, self.page_size)
            yield [mapper.listing_from_raw(item) for item in raw["listings"]]
            cursor = raw.get("next_cursor") or None
            if cursor is None:
                return

    async def push_fulfillment(self, request: FulfillmentRequest) -> str:
        """Record a shipment; its key goes along as Idempotency-Key (deduped only by an
        idempotent channel, so only there is an unclear outcome resent)."""
        raw = await self._client.create_fulfillment(
            request.order_external_id,
            mapper.fulfillment_body(request),
            key=request.key,
            is_deduped=self.capabilities.idempotent_fulfillment,
        )
        try:
            return str(raw["fulfillment"]["id"])
        except (KeyError, TypeError) as err:
            raise UncertainOutcomeError(
                "answer has no fulfilment id", channel=self.name, operation="create_fulfillment"
            ) from err

    async def find_fulfillment(self, request: FulfillmentRequest) -> str | None:
        """The channel's id of the fulfilment that is `request`, if it is there."""
        raw = await self._client.list_fulfillments(request.order_external_id)
        return mapper.matching_fulfillment(raw["fulfillments"], request)

    async def cancel_order(self, request: CancelRequest) -> None:
        """Cancel on the channel; PermanentError with its reason when it refuses."""
        await self._client.cancel_order(
            request.order_external_id,
            mapper.cancel_body(request),
            key=request.key,
            is_deduped=self.capabilities.idempotent_fulfillment,
        )

    async def aclose(self) -> None:
        """Release connections."""
        await self._client.aclose()


def _reason(err: Exception) -> str:
    if isinstance(err, KeyError):
        return f"missing field {err.args[0]!r}"
    if isinstance(err, InvalidValueError):
        return str(err)
    return type(err).__name__
