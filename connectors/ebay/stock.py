"""Stock out in both worlds: each target goes through the API its listing lives in.

Trading listings: ReviseInventoryStatus, four InventoryStatus a call (variations of one item kept
together, since eBay counts a revision per item per call). Inventory-API listings:
bulkUpdatePriceQuantity, up to 25 a call; a call refused as a whole is sent again one entry per
call, which also covers the reading of the docs that allows one SKU per call (unsure).

Before anything is sent, each listing's revisions today are checked (quota.RevisionBook): a
target eBay's 250-a-day limit cannot take, or a rise that has to wait its turn, comes back RETRY
with the reason, and the engine's coalescing keeps only the latest target meanwhile. When a push
got no answer from eBay at all (quota pacing, throttling, eBay down), the error itself is raised,
so the engine waits as long as it says; otherwise each target gets its own result.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from connectors.base import InvalidValueError, PushOutcome, StockPushResult, StockTarget
from connectors.ebay import const, trading_xml
from connectors.ebay.client import EbayRestClient, json_body
from connectors.ebay.inventory import (
    StockListing,
    bulk_update_body,
    parse_listing,
    read_bulk_answer,
)
from connectors.ebay.quota import RevisionBook
from connectors.ebay.trading import TradingClient
from connectors.errors import (
    AuthError,
    ConnectorError,
    PermanentError,
    RateLimitedError,
    UncertainOutcomeError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Work:
    index: int  # the target's position in the push
    listing: StockListing
    quantity: int


@dataclass
class _Push:
    """One push in progress: its targets, the results so far, the first call-level failure."""

    targets: Sequence[StockTarget]
    results: dict[int, StockPushResult] = field(default_factory=dict)
    failure: ConnectorError | None = None


class StockPusher:
    """Pushes stock targets of one channel through the API of each listing's world."""

    def __init__(
        self,
        *,
        channel: str,
        rest: EbayRestClient,
        trading: TradingClient,
        revisions: RevisionBook,
        default_world: str,
        inventory_batch: int = const.INVENTORY_BATCH,
    ) -> None:
        self.channel = channel
        self._rest = rest
        self._trading = trading
        self.revisions = revisions
        self._default_world = default_world
        self._inventory_batch = max(1, inventory_batch)
        self._last_sent: dict[str, int] = {}  # listing ref -> the quantity eBay last took

    async def push(self, targets: Sequence[StockTarget]) -> list[StockPushResult]:
        """One result per target, in order (the latest target per listing wins)."""
        push = _Push(targets)
        last = {target.listing_ref: i for i, target in enumerate(targets)}
        trading: list[_Work] = []
        inventory: list[_Work] = []
        for i, target in enumerate(targets):
            if last[target.listing_ref] != i:
                continue  # a later target for the same listing supersedes this one
            try:
                listing = parse_listing(
                    target.listing_ref, target.extra, default_world=self._default_world
                )
            except InvalidValueError as err:
                self._set(push, i, PushOutcome.REJECTED, str(err))
                continue
            shown = self._last_sent.get(target.listing_ref)
            held = self.revisions.hold(
                listing.revision_key,
                target.quantity,
                is_decrease=shown is not None and target.quantity < shown,
            )
            if held is not None:  # not sent: a hold for as long as it says, not a failure
                self._set(push, i, PushOutcome.RETRY, held[0], retry_after=held[1])
                continue
            work = _Work(i, listing, target.quantity)
            (trading if listing.world == const.STOCK_API_TRADING else inventory).append(work)
        trading.sort(key=lambda w: (w.listing.item_id or "", w.listing.sku or ""))
        for start in range(0, len(trading), const.TRADING_BATCH):
            await self._trading_call(push, trading[start : start + const.TRADING_BATCH])
        for start in range(0, len(inventory), self._inventory_batch):
            await self._inventory_call(push, inventory[start : start + self._inventory_batch])
        answered = any(
            r.outcome in (PushOutcome.APPLIED, PushOutcome.REJECTED) for r in push.results.values()
        )
        if push.failure is not None and not answered:
            raise push.failure
        results = []
        for target in targets:
            found = push.results.get(last[target.listing_ref])
            results.append(
                StockPushResult(
                    target.listing_ref,
                    found.outcome,
                    error=found.error,
                    retry_after=found.retry_after,
                )
                if found is not None
                else StockPushResult(target.listing_ref, PushOutcome.RETRY, error="not sent")
            )
        return results

    def _set(
        self,
        push: _Push,
        index: int,
        outcome: PushOutcome,
        error: str | None,
        *,
        retry_after: float | None = None,
    ) -> None:
        target = push.targets[index]
        push.results[index] = StockPushResult(
            target.listing_ref, outcome, error=error, retry_after=retry_after
        )
        if outcome is PushOutcome.APPLIED:
            self._last_sent[target.listing_ref] = target.quantity

    def _fail(self, push: _Push, batch: Sequence[_Work], err: ConnectorError) -> None:
        for work in batch:
            self._set(push, work.index, PushOutcome.RETRY, str(err))
        if push.failure is None:
            push.failure = err

    def _count(self, batch: Sequence[_Work]) -> None:
        for key in dict.fromkeys(work.listing.revision_key for work in batch):
            self.revisions.record(key)

    async def _trading_call(self, push: _Push, batch: Sequence[_Work]) -> None:
        if isinstance(push.failure, RateLimitedError):
            self._fail(push, batch, push.failure)  # quota or throttle: send no more now
            return
        items = [
            trading_xml.RevisedItem(str(w.listing.item_id), w.listing.sku, w.quantity)
            for w in batch
        ]
        try:
            answer = await self._trading.call(
                "ReviseInventoryStatus", trading_xml.revise_request(items)
            )
        except AuthError:
            raise
        except PermanentError as err:
            if len(batch) > 1:  # one bad item may have spoiled the call: each on its own
                for work in batch:
                    await self._trading_call(push, [work])
                return
            self._set(push, batch[0].index, PushOutcome.REJECTED, str(err))
            return
        except ConnectorError as err:
            if isinstance(err, UncertainOutcomeError):
                self._count(batch)  # it may have been applied: it may have cost a revision
            self._fail(push, batch, err)
            return
        outcomes = trading_xml.read_revise_answer(answer, items)
        self._count(
            [w for w, (o, _) in zip(batch, outcomes, strict=True) if o is PushOutcome.APPLIED]
        )
        for work, (outcome, reason) in zip(batch, outcomes, strict=True):
            self._set(push, work.index, outcome, reason)

    async def _inventory_call(self, push: _Push, batch: Sequence[_Work]) -> None:
        if isinstance(push.failure, RateLimitedError):
            self._fail(push, batch, push.failure)
            return
        body = bulk_update_body([(w.listing, w.quantity) for w in batch])
        try:
            response = await self._rest.call(
                "POST",
                const.BULK_UPDATE_PATH,
                api=const.API_INVENTORY,
                operation="bulkUpdatePriceQuantity",
                is_resendable=True,  # absolute quantities: sending twice sets the same
                body=body,
            )
        except AuthError:
            raise
        except PermanentError as err:
            if len(batch) > 1:
                log.info(
                    "channel %s: bulkUpdatePriceQuantity refused a batch of %d; one per call",
                    self.channel,
                    len(batch),
                )
                for work in batch:
                    await self._inventory_call(push, [work])
                return
            self._set(push, batch[0].index, PushOutcome.REJECTED, str(err))
            return
        except ConnectorError as err:
            if isinstance(err, UncertainOutcomeError):
                self._count(batch)
            self._fail(push, batch, err)
            return
        answer = json_body(response, channel=self.channel, operation="bulkUpdatePriceQuantity")
        outcomes = read_bulk_answer(answer, [str(w.listing.sku) for w in batch])
        self._count(
            [w for w, (o, _) in zip(batch, outcomes, strict=True) if o is PushOutcome.APPLIED]
        )
        for work, (outcome, reason) in zip(batch, outcomes, strict=True):
            self._set(push, work.index, outcome, reason)
