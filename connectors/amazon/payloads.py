"""What the connector sends (patch, feed, shipment confirmation) and how it reads the answers.

Pure functions, each built to the official model it is tested against: ListingsItemPatchRequest
(listingsItems_2021-08-01.json), the JSON_LISTINGS_FEED v2 document (listings-feed-schema-v2
.json) and its processing report, ConfirmShipmentRequest (ordersV0.json).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

from connectors.amazon.const import (
    CARRIER_CODES,
    FEED_ISSUE_LOCALE,
    FEED_VERSION,
    FULFILLMENT_AVAILABILITY_PATH,
    MERCHANT_CHANNEL_CODE,
    OTHER_CARRIER,
    PRODUCT_TYPE,
)
from connectors.base import (
    FulfillmentRequest,
    PushOutcome,
    RawPayload,
    StockPushResult,
    StockTarget,
)
from connectors.http import REASON_LIMIT

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


class UnshippableError(ValueError):
    """A shipment Amazon would refuse as it stands; the message says what is missing."""


def excerpt(parts: Sequence[str]) -> str:
    """Amazon's messages, joined and cut to the length an error keeps."""
    joined = " ".join("; ".join(parts).split())
    return joined if len(joined) <= REASON_LIMIT else joined[: REASON_LIMIT - 1] + "…"


# Stock -------------------------------------------------------------------------------------------


def availability_patch(quantity: int) -> dict[str, Any]:
    """The JSON Patch that sets the merchant-fulfilled quantity (channel code DEFAULT)."""
    return {
        "op": "replace",
        "path": FULFILLMENT_AVAILABILITY_PATH,
        "value": [{"fulfillment_channel_code": MERCHANT_CHANNEL_CODE, "quantity": quantity}],
    }


def patch_body(quantity: int) -> dict[str, Any]:
    """patchListingsItem's body for one quantity."""
    return {"productType": PRODUCT_TYPE, "patches": [availability_patch(quantity)]}


def issue_messages(issues: object, *, severity: str = "ERROR") -> list[str]:
    """Each issue of that severity as "CODE: message" (Amazon's words, naming attributes)."""
    found = []
    for issue in issues if isinstance(issues, list) else ():
        if isinstance(issue, Mapping) and issue.get("severity") == severity:
            code = issue.get("code")
            message = str(issue.get("message") or "refused")
            found.append(f"{code}: {message}" if code else message)
    return found


def patch_result(listing_ref: str, answer: RawPayload) -> StockPushResult:
    """One patch's answer: ACCEPTED (queued; Amazon applies it shortly) or VALID count as applied,
    INVALID is a permanent refusal with Amazon's messages."""
    status = answer.get("status")
    if status in ("ACCEPTED", "VALID"):
        return StockPushResult(listing_ref, PushOutcome.APPLIED)
    if status == "INVALID":
        reason = excerpt(issue_messages(answer.get("issues"))) or "INVALID"
        return StockPushResult(listing_ref, PushOutcome.REJECTED, error=reason)
    return StockPushResult(
        listing_ref, PushOutcome.RETRY, error=f"unexpected submission status {str(status)[:40]!r}"
    )


def listings_feed(seller_id: str, targets: Sequence[StockTarget]) -> dict[str, Any]:
    """A JSON_LISTINGS_FEED v2 document: one PATCH message per target, messageId = position + 1."""
    return {
        "header": {
            "sellerId": seller_id,
            "version": FEED_VERSION,
            "issueLocale": FEED_ISSUE_LOCALE,
        },
        "messages": [
            {
                "messageId": index + 1,
                "sku": target.listing_ref,
                "operationType": "PATCH",
                "productType": PRODUCT_TYPE,
                "patches": [availability_patch(target.quantity)],
            }
            for index, target in enumerate(targets)
        ],
    }


def encode_document(document: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON bytes (the package would encode a str as ISO-8859-1)."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_document(content: bytes, compression: object) -> dict[str, Any]:
    """A processing report from its downloaded bytes (GZIP when the document says so)."""
    if compression == "GZIP" or content[:2] == b"\x1f\x8b":
        try:
            content = gzip.decompress(content)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError("the report is not valid gzip") from err
    report = json.loads(content.decode("utf-8-sig"))
    if not isinstance(report, dict):
        raise ValueError("the report is not a JSON object")
    return report


def report_errors(report: RawPayload, skus: Sequence[str]) -> tuple[dict[int, str], list[str]]:
    """ERROR issues of a processing report per messageId (1-based position in `skus`), and the
    feed-level ones that name no message."""
    by_sku = {sku: index + 1 for index, sku in enumerate(skus)}
    per_message: dict[int, list[str]] = {}
    feed_level: list[str] = []
    for issue in report.get("issues") or ():
        if not isinstance(issue, Mapping) or issue.get("severity") != "ERROR":
            continue
        (message,) = issue_messages([issue])
        message_id = issue.get("messageId")
        if not isinstance(message_id, int) or not 1 <= message_id <= len(skus):
            message_id = by_sku.get(str(issue.get("sku")))
        if message_id is None:
            feed_level.append(message)
        else:
            per_message.setdefault(message_id, []).append(message)
    return {key: excerpt(value) for key, value in per_message.items()}, feed_level


# Shipments ---------------------------------------------------------------------------------------


def carrier_fields(carrier: str | None, overrides: Mapping[str, str]) -> dict[str, str]:
    """carrierCode (and carrierName for "Other") for one of our carrier names."""
    name = (carrier or "").strip()
    if not name:
        raise UnshippableError("Amazon needs the carrier of a shipment")
    key = _NOT_ALNUM.sub("", name.lower())
    own = {_NOT_ALNUM.sub("", k.lower()): v for k, v in overrides.items()}
    code = own.get(key) or CARRIER_CODES.get(key)
    if code is None or code == OTHER_CARRIER:
        return {"carrierCode": OTHER_CARRIER, "carrierName": name[:100]}
    return {"carrierCode": code}


def package_reference(key: str) -> str:
    """A packageReferenceId for a shipment key: Amazon takes positive numbers only, and the same
    shipment must get the same one when it is sent again."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return str(int.from_bytes(digest[:6], "big") or 1)


def confirm_shipment_body(
    request: FulfillmentRequest, marketplace_id: str, carrier_overrides: Mapping[str, str]
) -> dict[str, Any]:
    """confirmShipment's ConfirmShipmentRequest for a shipment of ours."""
    tracking = (request.tracking_number or "").strip()
    if not tracking:
        raise UnshippableError("Amazon needs a tracking number to confirm a shipment")
    items = [
        {"orderItemId": line.external_line_id, "quantity": line.quantity}
        for line in request.lines
        if line.quantity > 0
    ]
    if not items:
        raise UnshippableError("the shipment has no units")
    shipped_at = request.shipped_at.astimezone(UTC)
    millis = f"{shipped_at.microsecond // 1000:03d}"
    return {
        "marketplaceId": marketplace_id,
        "packageDetail": {
            "packageReferenceId": package_reference(request.key),
            **carrier_fields(request.carrier, carrier_overrides),
            "trackingNumber": tracking[:100],
            "shipDate": shipped_at.strftime(f"%Y-%m-%dT%H:%M:%S.{millis}Z"),
            "orderItems": items,
        },
    }
