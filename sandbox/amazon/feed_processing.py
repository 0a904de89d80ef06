"""Processing a JSON_LISTINGS_FEED document into listing changes and a processing report in
Amazon's schema (specs/amazon/.../schemas/feeds/listings-feed-processing-report-schema-v2.json).

A document that cannot be read (not UTF-8 JSON, no header or messages, another seller, more than
25,000 messages) fails the whole feed: FATAL, with a report whose issue carries no messageId.
Otherwise each message is checked on its own (against the message schema when the specs are
there, then by the listing rules of listings_api.py) and either applied or reported as an ERROR
issue with its messageId and SKU: one bad SKU never stops the others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sandbox.amazon.listings_api import (
    AVAILABILITY_PATH,
    UNKNOWN_SKU,
    ListingIssue,
    availability_quantity,
)

if TYPE_CHECKING:
    from sandbox.amazon.app import AmazonSandbox

MAX_MESSAGES = 25_000
FATAL_CODE = "4000100"
SCHEMA_CODE = "4000101"
OPERATIONS = ("UPDATE", "PARTIAL_UPDATE", "PATCH", "DELETE")


class FeedFatalError(Exception):
    """The document as a whole cannot be processed."""


@dataclass
class Outcome:
    """What processing one feed produced."""

    report: dict[str, Any]
    messages: int = 0
    errors: int = 0
    applied: dict[str, int] = field(default_factory=dict)


def fatal_report(seller_id: str, feed_id: str, message: str) -> dict[str, Any]:
    """The report of a FATAL feed."""
    return {
        "header": {"sellerId": seller_id, "version": "2.0", "feedId": feed_id},
        "issues": [{"code": FATAL_CODE, "severity": "ERROR", "message": message}],
        "summary": {
            "errors": 1,
            "warnings": 0,
            "messagesProcessed": 0,
            "messagesAccepted": 0,
            "messagesInvalid": 0,
        },
    }


def _read(sandbox: AmazonSandbox, data: bytes) -> tuple[dict[str, Any], list[Any]]:
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FeedFatalError("The feed document is not valid UTF-8 JSON.") from err
    if not isinstance(document, dict):
        raise FeedFatalError("The feed document must be a JSON object.")
    header, messages = document.get("header"), document.get("messages")
    if not isinstance(header, dict) or header.get("version") != "2.0":
        raise FeedFatalError("The feed header is missing or its version is not 2.0.")
    if header.get("sellerId") != sandbox.store.seller_id:
        raise FeedFatalError("The feed header's sellerId is not the seller who submitted it.")
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise FeedFatalError(f"The feed must hold 1 to {MAX_MESSAGES} messages.")
    if sandbox.specs is not None:
        skeleton = {
            **document,
            "messages": [{"messageId": 1, "sku": "x", "operationType": "DELETE"}],
        }
        problems = sandbox.specs.schema_problems("listingsFeed", skeleton)
        if problems:
            raise FeedFatalError(f"The feed header does not follow the schema: {problems[0]}")
    return header, messages


def _shape(message: Any) -> str:
    """A key equal for messages the message schema cannot tell apart: it checks the messageId's
    and the SKU's types and bounds, and only that patch values are objects."""
    if not isinstance(message, dict):
        return json.dumps(message)
    shape = dict(message)
    number, sku = shape.get("messageId"), shape.get("sku")
    if type(number) is int and 1 <= number <= 2_147_483_647:
        shape["messageId"] = 1
    if isinstance(sku, str) and sku:
        shape["sku"] = "x"
    patches = shape.get("patches")
    if isinstance(patches, list):
        shape["patches"] = [
            {**p, "value": [{} if isinstance(v, dict) else v for v in p["value"]]}
            if isinstance(p, dict) and isinstance(p.get("value"), list)
            else p
            for p in patches
        ]
    return json.dumps(shape, sort_keys=True)


def _schema_problems(sandbox: AmazonSandbox, message: Any) -> list[str]:
    """The message schema's verdict, computed once per message shape (a 25,000-message feed is
    mostly one shape; validating each message would take seconds)."""
    specs = sandbox.specs
    assert specs is not None
    key = _shape(message)
    cached = specs.verdicts.get(key)
    if cached is None:
        cached = specs.schema_problems("listingsFeedMessage", message)
        if len(specs.verdicts) < 10_000:
            specs.verdicts[key] = cached
    return cached


def _message_issue(
    sandbox: AmazonSandbox, message: Any, seen: set[int]
) -> tuple[ListingIssue | None, int | None]:
    """Why a message is refused (None: it is acceptable), and the quantity it sets."""
    if sandbox.specs is not None:
        problems = _schema_problems(sandbox, message)
        if problems:
            return ListingIssue(
                SCHEMA_CODE, f"The message does not follow the schema: {problems[0]}", None
            ), None
    if not isinstance(message, dict) or not isinstance(message.get("sku"), str):
        return ListingIssue(
            SCHEMA_CODE, "The message needs a messageId, a sku and an operationType.", None
        ), None
    number = message.get("messageId")
    if type(number) is not int or number < 1 or message.get("operationType") not in OPERATIONS:
        return ListingIssue(
            SCHEMA_CODE, "The message needs a messageId, a sku and an operationType.", None
        ), None
    if number in seen:
        return ListingIssue(
            SCHEMA_CODE, f"messageId {number} is used twice in this feed.", None
        ), None
    seen.add(number)
    sku, operation = message["sku"], message["operationType"]
    listing = sandbox.store.listings.get(sku)
    if operation == "DELETE":
        if listing is None:
            return ListingIssue(
                UNKNOWN_SKU, f"SKU {sku} does not exist for this seller.", None
            ), None
        return None, None
    if operation == "PATCH":
        quantity: int | None = None
        for patch in message.get("patches") or []:
            if isinstance(patch, dict) and patch.get("path") == AVAILABILITY_PATH:
                outcome = availability_quantity(
                    sandbox, sku, listing, patch.get("op", ""), patch.get("value")
                )
                if isinstance(outcome, ListingIssue):
                    return outcome, None
                quantity = outcome
        if listing is None:
            return ListingIssue(
                UNKNOWN_SKU, f"SKU {sku} does not exist for this seller.", None
            ), None
        return None, quantity
    attributes = message.get("attributes") or {}
    if listing is None and operation == "PARTIAL_UPDATE":
        return ListingIssue(UNKNOWN_SKU, f"SKU {sku} does not exist for this seller.", None), None
    if "fulfillment_availability" not in attributes:
        return None, None
    if listing is None:  # an UPDATE creating the listing
        return None, _created_quantity(attributes["fulfillment_availability"])
    outcome = availability_quantity(
        sandbox, sku, listing, "replace", attributes["fulfillment_availability"]
    )
    if isinstance(outcome, ListingIssue):
        return outcome, None
    return None, outcome


def _created_quantity(value: Any) -> int:
    for entry in value if isinstance(value, list) else []:
        if isinstance(entry, dict) and entry.get("fulfillment_channel_code") == "DEFAULT":
            quantity = entry.get("quantity")
            if type(quantity) is int and quantity >= 0:
                return quantity
    return 0


def process_listings_feed(sandbox: AmazonSandbox, feed_id: str, data: bytes) -> Outcome:
    """Apply a JSON_LISTINGS_FEED document; its processing report (FeedFatalError: the feed is
    FATAL)."""
    header, messages = _read(sandbox, data)
    store = sandbox.store
    store.settle()
    issues: list[dict[str, Any]] = []
    accepted: list[dict[str, Any]] = []
    seen: set[int] = set()
    applied: dict[str, int] = {}
    for message in messages:
        issue, quantity = _message_issue(sandbox, message, seen)
        if issue is not None:
            entry: dict[str, Any] = {
                "code": issue.code,
                "severity": "ERROR",
                "message": issue.message,
            }
            if (
                isinstance(message, dict)
                and type(message.get("messageId")) is int
                and message["messageId"] >= 1
            ):
                entry["messageId"] = message["messageId"]
            if isinstance(message, dict) and isinstance(message.get("sku"), str) and message["sku"]:
                entry["sku"] = message["sku"]
            if issue.attribute:
                entry["attributeName"] = issue.attribute
            issues.append(entry)
            continue
        sku = message["sku"]
        if message["operationType"] == "DELETE":
            del store.listings[sku]
            applied.pop(sku, None)
        else:
            if sku not in store.listings:
                title = _item_name(message.get("attributes") or {}) or sku
                store.add_listing(
                    sku,
                    quantity=0,
                    price=Decimal("10.00"),
                    title=title,
                    product_type=message.get("productType") or "PRODUCT",
                )
            if quantity is not None:
                store.queue_quantity(sku, quantity, 0)
                applied[sku] = quantity
        accepted.append(message)
    invalid = len(messages) - len(accepted)
    report: dict[str, Any] = {
        "header": {"sellerId": store.seller_id, "version": "2.0", "feedId": feed_id},
        "issues": issues,
        "summary": {
            "errors": len(issues),
            "warnings": 0,
            "messagesProcessed": len(messages),
            "messagesAccepted": len(accepted),
            "messagesInvalid": invalid,
        },
    }
    wanted = header.get("report")
    if isinstance(wanted, dict) and wanted.get("includedData"):
        report["header"]["report"] = wanted
        included = set(wanted["includedData"])
        items = []
        for message in accepted:
            listing = store.listings.get(message["sku"])
            if listing is None:
                continue
            item: dict[str, Any] = {"sku": listing.sku}
            if "fulfillmentAvailability" in included:
                item["fulfillmentAvailability"] = [
                    {
                        "fulfillmentChannelCode": listing.fulfillment_channel,
                        "quantity": listing.quantity,
                    }
                ]
            if "issues" in included:
                item["issues"] = []
            items.append(item)
        report["summary"]["itemSummary"] = {"items": len(items), "errors": 0, "warnings": 0}
        report["items"] = items
    return Outcome(report, messages=len(messages), errors=invalid, applied=applied)


def _item_name(attributes: dict[str, Any]) -> str | None:
    names = attributes.get("item_name")
    if isinstance(names, list) and names and isinstance(names[0], dict):
        value = names[0].get("value")
        return value if isinstance(value, str) else None
    return None
