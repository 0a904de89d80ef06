"""Pure builders of Trading API request data (for ebaysdk's dict-to-XML) and readers of the XML
answers: ReviseInventoryStatus (stock of Trading listings) and GetMyeBaySelling (the active
listings, for binding and stock reads).

Answers are parsed with defusedxml: an answer that declares entities (a billion-laughs bomb, an
XXE probe: never eBay's) is refused before any expansion with PermanentError, and an external DTD
is never fetched. ebaysdk only sends the request; it never parses our answers (trading.py).
Quantities of Trading listings
follow eBay's rule (developer KB 1526/1525): a revision sets what is *available*, and eBay adds
the units already sold to the listing's `Quantity`, so what a listing shows is Quantity minus
QuantitySold (or QuantityAvailable, where GetMyeBaySelling gives it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from connectors.base import ChannelListing, PushOutcome
from connectors.ebay import const
from connectors.errors import PermanentError, RetryableError

_MESSAGE_MAX = 300


def _q(name: str) -> str:
    return f"{{{const.TRADING_NS}}}{name}"


def _path(path: str) -> str:
    return "/".join(_q(part) for part in path.split("/"))


def child_text(element: Any, path: str) -> str | None:
    """The stripped text at `path` (slash-separated, namespace added) or None."""
    found = element.find(_path(path))
    if found is None or found.text is None:
        return None
    text = str(found.text).strip()
    return text or None


def _int(element: Any, path: str) -> int | None:
    text = child_text(element, path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class TradingError:
    """One <Errors> entry of an answer."""

    code: str
    severity: str
    classification: str
    message: str
    parameters: tuple[str, ...]

    @property
    def is_warning(self) -> bool:
        """A warning: the call (or that item) still went through."""
        return self.severity == "Warning"


@dataclass(frozen=True)
class TradingAnswer:
    """A parsed Trading API answer."""

    verb: str
    ack: str
    errors: tuple[TradingError, ...]
    root: Any  # the ElementTree element of <VerbResponse>

    @property
    def is_failure(self) -> bool:
        """Ack Failure or PartialFailure: something of the request was not done."""
        return self.ack in ("Failure", "PartialFailure")

    @property
    def blocking_errors(self) -> tuple[TradingError, ...]:
        """The errors that are not warnings."""
        return tuple(error for error in self.errors if not error.is_warning)

    def summary(self) -> str:
        """eBay's codes and messages of the blocking errors, short."""
        parts = [f"{e.code}: {e.message}" for e in self.blocking_errors] or [f"Ack {self.ack}"]
        text = "; ".join(parts)
        return text if len(text) <= _MESSAGE_MAX else text[: _MESSAGE_MAX - 1] + "…"


def parse_answer(content: bytes, *, channel: str, operation: str) -> TradingAnswer:
    """Read an answer; RetryableError when it is not a Trading API answer (a proxy's page),
    PermanentError when it declares entities (refused before any is expanded)."""
    try:
        # No entity is ever expanded and nothing external is fetched: defusedxml stops at the
        # declaration, so a bomb costs nothing and no local file or URL is read.
        root = fromstring(content, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as err:
        raise PermanentError(
            f"answer refused: it declares XML entities ({type(err).__name__}); "
            "eBay's answers never do, so nothing in it was read",
            channel=channel,
            operation=operation,
        ) from None
    except ParseError as err:
        raise RetryableError("answer is not XML", channel=channel, operation=operation) from err
    ack = child_text(root, "Ack")
    if ack is None:
        raise RetryableError("answer has no Ack", channel=channel, operation=operation)
    errors = []
    for node in root.findall(_q("Errors")):
        short = child_text(node, "ShortMessage") or ""
        long = child_text(node, "LongMessage") or ""
        errors.append(
            TradingError(
                code=child_text(node, "ErrorCode") or "",
                severity=child_text(node, "SeverityCode") or "Error",
                classification=child_text(node, "ErrorClassification") or "",
                message=" ".join((long or short).split())[:_MESSAGE_MAX],
                parameters=tuple(
                    str(value.text).strip()
                    for param in node.findall(_q("ErrorParameters"))
                    for value in param.findall(_q("Value"))
                    if value.text
                ),
            )
        )
    verb = str(root.tag).rpartition("}")[2].removesuffix("Response")
    return TradingAnswer(verb=verb, ack=ack, errors=tuple(errors), root=root)


# ReviseInventoryStatus -----------------------------------------------------------------------


@dataclass(frozen=True)
class RevisedItem:
    """One InventoryStatus of a ReviseInventoryStatus call."""

    item_id: str
    variation_sku: str | None
    quantity: int


def revise_request(items: Sequence[RevisedItem]) -> dict[str, Any]:
    """The call's data: one InventoryStatus per item (ItemID, and SKU for a variation)."""
    if not 0 < len(items) <= const.TRADING_BATCH:
        raise ValueError(f"ReviseInventoryStatus takes 1 to {const.TRADING_BATCH} items")
    statuses = []
    for item in items:
        status: dict[str, Any] = {"ItemID": item.item_id, "Quantity": item.quantity}
        if item.variation_sku is not None:
            status["SKU"] = item.variation_sku
        statuses.append(status)
    return {"InventoryStatus": statuses}


def read_revise_answer(
    answer: TradingAnswer, items: Sequence[RevisedItem]
) -> list[tuple[PushOutcome, str | None]]:
    """Per item, in order: (APPLIED | REJECTED | RETRY, eBay's reason).

    An item eBay confirms (an InventoryStatus with its ItemID and SKU) or a call without a
    blocking error is applied; a blocking error naming the item's ItemID or SKU in its
    ErrorParameters refuses it (retry for eBay's internal errors); in a failed call of one
    item the error is that item's; any other item of a failed call is tried again."""
    if not answer.is_failure and not answer.blocking_errors:
        return [(PushOutcome.APPLIED, None)] * len(items)
    confirmed = {
        (child_text(node, "ItemID"), child_text(node, "SKU"))
        for node in answer.root.findall(_q("InventoryStatus"))
    }
    results: list[tuple[PushOutcome, str | None]] = []
    for item in items:
        named = [
            error
            for error in answer.blocking_errors
            if item.item_id in error.parameters
            or (item.variation_sku is not None and item.variation_sku in error.parameters)
        ]
        if not named and len(items) == 1:
            named = list(answer.blocking_errors)
        if named:
            error = named[0]
            outcome = (
                PushOutcome.RETRY
                if error.code in const.TRADING_RETRY_ERRORS or error.classification == "SystemError"
                else PushOutcome.REJECTED
            )
            results.append((outcome, f"{error.code}: {error.message}"))
        elif (item.item_id, item.variation_sku) in confirmed or (
            item.variation_sku is None and any(item.item_id == i for i, _ in confirmed)
        ):
            results.append((PushOutcome.APPLIED, None))
        elif answer.is_failure:
            results.append(
                (PushOutcome.RETRY, f"not confirmed in a failed call ({answer.summary()})")
            )
        else:
            results.append((PushOutcome.APPLIED, None))
    return results


# GetMyeBaySelling ----------------------------------------------------------------------------


def my_selling_request(page: int) -> dict[str, Any]:
    """One page of the seller's active listings, with their variations."""
    return {
        "ActiveList": {
            "Include": "true",
            "IncludeVariations": "true",
            "Pagination": {"EntriesPerPage": const.TRADING_LISTINGS_PAGE, "PageNumber": page},
        },
        "DetailLevel": "ReturnAll",
    }


def _available(node: Any) -> int | None:
    shown = _int(node, "QuantityAvailable")
    if shown is not None:
        return shown
    quantity = _int(node, "Quantity")
    sold = _int(node, "SellingStatus/QuantitySold") or 0
    return None if quantity is None else quantity - sold


def trading_listing_ref(item_id: str, variation_sku: str | None = None) -> str:
    """Our listing ref of a Trading listing (or one variation of it)."""
    base = f"{const.STOCK_API_TRADING}:{item_id}"
    return base if variation_sku is None else f"{base}:{variation_sku}"


def listings_from_my_selling(answer: TradingAnswer) -> tuple[list[ChannelListing], int]:
    """The listings (one per variation of a multi-variation listing) of one page, and how many
    pages there are."""
    active = answer.root.find(_q("ActiveList"))
    if active is None:
        return [], 0
    listings = []
    for item in active.findall(_path("ItemArray/Item")):
        item_id = child_text(item, "ItemID")
        if item_id is None:
            continue
        variations = item.findall(_path("Variations/Variation"))
        extra: dict[str, object] = {"stock_api": const.STOCK_API_TRADING, "item_id": item_id}
        if child_text(item, "OutOfStockControl") == "false":
            # Without eBay's out-of-stock control a fixed-price listing ends when it shows 0.
            extra["ends_at_zero"] = True
        if not variations:
            listings.append(
                ChannelListing(
                    listing_ref=trading_listing_ref(item_id),
                    sku=child_text(item, "SKU"),
                    quantity=_available(item),
                    extra=extra,
                )
            )
        for variation in variations:
            sku = child_text(variation, "SKU")
            if sku is None:
                continue  # a variation is revised by its SKU: without one it cannot be
            listings.append(
                ChannelListing(
                    listing_ref=trading_listing_ref(item_id, sku),
                    sku=sku,
                    quantity=_available(variation),
                    extra={**extra, "variation_sku": sku},
                )
            )
    pages = _int(active, "PaginationResult/TotalNumberOfPages") or 0
    return listings, pages
