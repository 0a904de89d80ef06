"""The Listings Items API: `patchListingsItem` (the stock push) and `getListingsItem`, and the
rules both the patch and the JSON_LISTINGS_FEED apply to a listing's
`/attributes/fulfillment_availability` (CHANNELS.md, "Stock push").

A patch is checked, answered ACCEPTED (or INVALID with issues) and applied asynchronously:
`patch_apply_delay_s` later, or at once by default. ACCEPTED is not proof of application (a lost
write is ACCEPTED and never applied). Only `DEFAULT` (merchant-fulfilled) quantities are the
seller's to set: a DEFAULT quantity on an FBA listing, or any AMAZON_* quantity, is INVALID. The
issue codes are the sandbox's own (Amazon publishes no list for these cases).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sandbox.amazon.api import Answer, Call
from sandbox.amazon.errors import ApiError, invalid_input, not_found
from sandbox.amazon.model import FBA_CHANNEL_PREFIX, QUANTITY_LIMIT, Listing, iso

if TYPE_CHECKING:
    from sandbox.amazon.app import AmazonSandbox

AVAILABILITY_PATH = "/attributes/fulfillment_availability"

UNKNOWN_SKU = "4000001"
NOT_SELLERS_STOCK = "4000002"
BAD_QUANTITY = "4000003"
REFUSED = "4000004"


@dataclass(frozen=True)
class ListingIssue:
    """Why Amazon refuses a listing update."""

    code: str
    message: str
    attribute: str | None = "fulfillment_availability"

    def as_issue(self) -> dict[str, Any]:
        """A Listings Items `Issue`."""
        issue: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "severity": "ERROR",
            "categories": ["INVALID_ATTRIBUTE"] if self.attribute else [],
        }
        if self.attribute:
            issue["attributeNames"] = [self.attribute]
        return issue


def availability_quantity(
    sandbox: AmazonSandbox, sku: str, listing: Listing | None, op: str, value: Any
) -> int | ListingIssue:
    """The DEFAULT quantity a `fulfillment_availability` change sets, or why it is refused."""
    if listing is None:
        return ListingIssue(UNKNOWN_SKU, f"SKU {sku} does not exist for this seller.", None)
    refused = sandbox.faults.settings.listing_errors.get(sku)
    if refused:
        return ListingIssue(REFUSED, refused)
    if op == "delete":
        return 0
    if not isinstance(value, list) or not value:
        return ListingIssue(BAD_QUANTITY, "fulfillment_availability needs one value per channel.")
    quantity: int | None = None
    for entry in value:
        code = entry.get("fulfillment_channel_code") if isinstance(entry, dict) else None
        if not isinstance(code, str):
            return ListingIssue(BAD_QUANTITY, "fulfillment_channel_code is required.")
        if code.startswith(FBA_CHANNEL_PREFIX) or (code == "DEFAULT" and listing.is_fba):
            return ListingIssue(
                NOT_SELLERS_STOCK,
                f"The quantity of {code} for SKU {sku} is managed by Amazon (FBA), not the seller.",
            )
        if code != "DEFAULT":
            return ListingIssue(BAD_QUANTITY, f"Unknown fulfillment_channel_code {code!r}.")
        given = entry.get("quantity")
        if type(given) is not int or not 0 <= given <= QUANTITY_LIMIT:
            return ListingIssue(
                BAD_QUANTITY,
                f"quantity must be an integer from 0 to {QUANTITY_LIMIT}, not {given!r}.",
            )
        quantity = given
    if quantity is None:
        return ListingIssue(BAD_QUANTITY, "fulfillment_availability has no DEFAULT quantity.")
    return quantity


def _check_seller(sandbox: AmazonSandbox, call: Call) -> None:
    if call.path["sellerId"] != sandbox.store.seller_id:
        raise ApiError(
            403,
            "Unauthorized",
            "Access to requested resource is denied.",
            "sellerId is not the seller who authorised this application.",
        )
    markets = call.query.strings("marketplaceIds")
    if not markets:
        raise invalid_input("marketplaceIds is required")
    unknown = [m for m in markets if m not in sandbox.store.marketplace_ids]
    if unknown:
        raise invalid_input(f"marketplaceIds: {unknown[0]} is not a marketplace of this seller")


def patch_listings_item(sandbox: AmazonSandbox, call: Call) -> Answer:
    """PATCH /listings/2021-08-01/items/{sellerId}/{sku}."""
    _check_seller(sandbox, call)
    body = call.body
    if not isinstance(body, dict) or not isinstance(body.get("productType"), str):
        raise invalid_input("productType is required")
    patches = body.get("patches")
    if not isinstance(patches, list) or not patches:
        raise invalid_input("patches must hold at least one patch operation")
    sku = call.path["sku"]
    store = sandbox.store
    store.settle()
    listing = store.listings.get(sku)
    issues: list[ListingIssue] = []
    quantity: int | None = None
    for patch in patches:
        if not isinstance(patch, dict) or patch.get("op") not in (
            "add",
            "replace",
            "merge",
            "delete",
        ):
            raise invalid_input("each patch needs an op: add, replace, merge or delete")
        if patch.get("path") != AVAILABILITY_PATH:
            continue  # other attributes: accepted, nothing the sandbox keeps
        outcome = availability_quantity(sandbox, sku, listing, patch["op"], patch.get("value"))
        if isinstance(outcome, ListingIssue):
            issues.append(outcome)
        else:
            quantity = outcome
    if listing is None and not issues:
        issues.append(ListingIssue(UNKNOWN_SKU, f"SKU {sku} does not exist for this seller.", None))
    preview = call.query.one("mode") == "VALIDATION_PREVIEW"
    status = "INVALID" if issues else ("VALID" if preview else "ACCEPTED")
    if status == "ACCEPTED" and quantity is not None and call.apply:
        store.queue_quantity(sku, quantity, sandbox.faults.settings.patch_apply_delay_s)
    answer: dict[str, Any] = {
        "sku": sku,
        "status": status,
        "submissionId": str(uuid.uuid4()),
        "issues": [issue.as_issue() for issue in issues],
    }
    if "identifiers" in call.query.strings("includedData"):
        answer["identifiers"] = (
            [
                {"marketplaceId": m, "asin": listing.asin}
                for m in call.query.strings("marketplaceIds")
            ]
            if listing
            else []
        )
    return Answer(200, answer)


def get_listings_item(sandbox: AmazonSandbox, call: Call) -> Answer:
    """GET /listings/2021-08-01/items/{sellerId}/{sku} (summaries, attributes, issues,
    fulfillmentAvailability; the rest is left out)."""
    _check_seller(sandbox, call)
    sku = call.path["sku"]
    sandbox.store.settle()
    listing = sandbox.store.listings.get(sku)
    if listing is None:
        raise not_found(f"SKU {sku} not found")
    return Answer(200, _item(listing, call))


SEARCH_PAGE_MAX = 20  # the model's pageSize maximum (default 10)


def search_listings_items(sandbox: AmazonSandbox, call: Call) -> Answer:
    """GET /listings/2021-08-01/items/{sellerId}: the seller's listings by SKU, a page at a time
    (`pageToken` is the sandbox's own opaque offset). Amazon's note that at most 1,000 items can be
    paged through is not enforced here."""
    _check_seller(sandbox, call)
    size_text = call.query.one("pageSize") or "10"
    if not size_text.isdigit() or not 1 <= int(size_text) <= SEARCH_PAGE_MAX:
        raise invalid_input(f"pageSize must be from 1 to {SEARCH_PAGE_MAX}")
    token = call.query.one("pageToken") or "0"
    if not token.isdigit():
        raise invalid_input("pageToken is not one this search returned")
    size, start = int(size_text), int(token)
    sandbox.store.settle()
    skus = sorted(sandbox.store.listings)
    answer: dict[str, Any] = {
        "numberOfResults": len(skus),
        "items": [_item(sandbox.store.listings[sku], call) for sku in skus[start : start + size]],
    }
    pagination: dict[str, str] = {}
    if start + size < len(skus):
        pagination["nextToken"] = str(start + size)
    if start > 0:
        pagination["previousToken"] = str(max(0, start - size))
    if pagination:
        answer["pagination"] = pagination
    return Answer(200, answer)


def _item(listing: Listing, call: Call) -> dict[str, Any]:
    """A listings `Item` with the data sets asked for (summaries by default)."""
    included = set(call.query.strings("includedData") or ["summaries"])
    channel = {"fulfillmentChannelCode": listing.fulfillment_channel, "quantity": listing.quantity}
    item: dict[str, Any] = {"sku": listing.sku}
    if "summaries" in included:
        item["summaries"] = [
            {
                "marketplaceId": marketplace,
                "asin": listing.asin,
                "productType": listing.product_type,
                "conditionType": "new_new",
                "status": ["BUYABLE", "DISCOVERABLE"] if listing.quantity else ["DISCOVERABLE"],
                "itemName": listing.title,
                "createdDate": iso(listing.created_at),
                "lastUpdatedDate": iso(listing.updated_at),
            }
            for marketplace in call.query.strings("marketplaceIds")
        ]
    if "attributes" in included:
        item["attributes"] = {
            "fulfillment_availability": [
                {
                    "fulfillment_channel_code": listing.fulfillment_channel,
                    "quantity": listing.quantity,
                }
            ]
        }
    if "issues" in included:
        item["issues"] = []
    if "fulfillmentAvailability" in included:
        item["fulfillmentAvailability"] = [channel]
    return item
