"""What the connector sends validates against Amazon's official models and schemas.

The requests are the ones the connector actually built, captured off the transport:
patchListingsItem bodies (ListingsItemPatchRequest), confirmShipment bodies
(ConfirmShipmentRequest), the uploaded JSON_LISTINGS_FEED document (listings-feed-schema-v2), and
the createFeedDocument / createFeed bodies of the Feeds model.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import jsonschema
import pytest

from connectors.amazon import const
from connectors.base import FulfillmentRequest, PushOutcome, ShipmentLine, StockTarget
from tests.connectors.amazon.conftest import load_spec
from tests.connectors.amazon.fake_amazon import (
    REPORT_URL,
    SELLER,
    UPLOAD_URL,
    US,
    FakeAmazon,
    connector,
)

pytestmark = pytest.mark.anyio
ORDER_ID = "114-3941689-8772232"


def _swagger_validator(model: Any, definition: str) -> jsonschema.Draft4Validator:
    """A validator for one definition of a Swagger 2.0 model (its schemas are JSON Schema 4)."""
    schema = {"$ref": f"#/definitions/{definition}", "definitions": model["definitions"]}
    return jsonschema.Draft4Validator(schema)


def _validate(validator: jsonschema.protocols.Validator, instance: Any) -> None:
    errors = sorted(validator.iter_errors(instance), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def _feeds_fake(report: dict[str, Any] | None = None) -> FakeAmazon:
    amazon = FakeAmazon()
    amazon.on(const.CREATE_FEED_DOCUMENT, {"feedDocumentId": "doc-1", "url": UPLOAD_URL})
    amazon.on(const.UPLOAD_FEED_DOCUMENT, {})
    amazon.on(const.CREATE_FEED, {"feedId": "feed-1"})
    amazon.on(
        const.GET_FEED,
        {
            "feedId": "feed-1",
            "feedType": const.FEED_TYPE,
            "createdTime": "2026-01-01T00:00:00Z",
            "processingStatus": "DONE",
            "resultFeedDocumentId": "report-1",
        },
    )
    amazon.on(const.GET_FEED_DOCUMENT, {"feedDocumentId": "report-1", "url": REPORT_URL})
    amazon.on(
        const.DOWNLOAD_FEED_DOCUMENT,
        report
        or {
            "header": {"sellerId": SELLER, "version": "2.0", "feedId": "feed-1"},
            "issues": [],
            "summary": {"errors": 0, "warnings": 0, "messagesProcessed": 1},
        },
    )
    return amazon


async def test_patch_listings_item_requests_validate() -> None:
    model = load_spec("models", "listings-items-api-model", "listingsItems_2021-08-01.json")
    validator = _swagger_validator(model, "ListingsItemPatchRequest")
    assert not validator.is_valid({"patches": [{"op": "set", "path": "/x"}]})  # it does check
    amazon = FakeAmazon()
    amazon.on(const.PATCH_LISTING, {"sku": "x", "status": "ACCEPTED", "submissionId": "s-1"})
    targets = [StockTarget("SKU-A", 7), StockTarget("SKU B/1", 0), StockTarget("ÄÖ-ü", 12)]
    results = await connector(amazon).push_stock(targets)
    assert [r.outcome for r in results] == [PushOutcome.APPLIED] * 3
    sent = amazon.calls(const.PATCH_LISTING)
    assert len(sent) == 3
    by_path = {s.request.url.raw_path.decode().split("?")[0]: s for s in sent}
    assert set(by_path) == {
        f"/listings/2021-08-01/items/{SELLER}/SKU-A",
        f"/listings/2021-08-01/items/{SELLER}/SKU%20B%2F1",
        f"/listings/2021-08-01/items/{SELLER}/%C3%84%C3%96-%C3%BC",
    }
    for request in sent:
        body = request.json()
        _validate(validator, body)
        assert request.query() == {"marketplaceIds": US}
        assert body["productType"] == "PRODUCT"
        (patch,) = body["patches"]
        assert patch["op"] == "replace"
        assert patch["path"] == "/attributes/fulfillment_availability"
        (value,) = patch["value"]
        assert value["fulfillment_channel_code"] == "DEFAULT"
    quantities = sorted(s.json()["patches"][0]["value"][0]["quantity"] for s in sent)
    assert quantities == [0, 7, 12]


@pytest.mark.parametrize(
    ("carrier", "expected"),
    [
        ("UPS", {"carrierCode": "UPS"}),
        ("Royal Mail", {"carrierCode": "Royal Mail"}),
        ("fed-ex", {"carrierCode": "FedEx"}),
        ("Bob's Courier", {"carrierCode": "Other", "carrierName": "Bob's Courier"}),
    ],
)
async def test_confirm_shipment_requests_validate(carrier: str, expected: dict[str, str]) -> None:
    model = load_spec("models", "orders-api-model", "ordersV0.json")
    validator = _swagger_validator(model, "ConfirmShipmentRequest")
    amazon = FakeAmazon()
    amazon.on(const.CONFIRM_SHIPMENT, httpx.Response(204))
    request = FulfillmentRequest(
        key="shipment-42",
        order_external_id=ORDER_ID,
        lines=[ShipmentLine("11111111111111", 2), ShipmentLine("22222222222222", 1)],
        carrier=carrier,
        tracking_number="1Z999AA10123456784",
        shipped_at=datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC),
    )
    reference = await connector(amazon).push_fulfillment(request)
    (sent,) = amazon.calls(const.CONFIRM_SHIPMENT)
    assert sent.request.url.path == f"/orders/v0/orders/{ORDER_ID}/shipmentConfirmation"
    body = sent.json()
    _validate(validator, body)
    detail = body["packageDetail"]
    assert body["marketplaceId"] == US
    assert {k: detail[k] for k in ("carrierCode", "carrierName") if k in detail} == expected
    assert detail["packageReferenceId"] == reference and reference.isdigit() and int(reference) > 0
    assert detail["trackingNumber"] == "1Z999AA10123456784"
    assert datetime.fromisoformat(detail["shipDate"]) == request.shipped_at  # ISO 8601 date-time
    assert detail["orderItems"] == [
        {"orderItemId": "11111111111111", "quantity": 2},
        {"orderItemId": "22222222222222", "quantity": 1},
    ]


async def test_listings_feed_document_and_feed_requests_validate() -> None:
    feed_schema = load_spec("schemas", "feeds", "listings-feed-schema-v2.json")
    feeds_model = load_spec("models", "feeds-api-model", "feeds_2021-06-30.json")
    amazon = _feeds_fake()
    targets = [StockTarget(f"SKU-{n:03d}", n % 7) for n in range(60)]  # above the threshold of 50
    results = await connector(amazon).push_stock(targets)
    assert [r.outcome for r in results] == [PushOutcome.APPLIED] * 60
    assert not amazon.calls(const.PATCH_LISTING)
    (upload,) = amazon.calls(const.UPLOAD_FEED_DOCUMENT)
    assert str(upload.request.url) == UPLOAD_URL
    assert upload.request.headers["content-type"] == "application/json; charset=UTF-8"
    document = json.loads(upload.request.content.decode("utf-8"))
    _validate(jsonschema.Draft7Validator(feed_schema), document)
    assert document["header"] == {"sellerId": SELLER, "version": "2.0", "issueLocale": "en_US"}
    assert [m["sku"] for m in document["messages"]] == [t.listing_ref for t in targets]
    assert [m["messageId"] for m in document["messages"]] == list(range(1, 61))
    assert {m["operationType"] for m in document["messages"]} == {"PATCH"}
    (create_document,) = amazon.calls(const.CREATE_FEED_DOCUMENT)
    _validate(
        _swagger_validator(feeds_model, "CreateFeedDocumentSpecification"), create_document.json()
    )
    assert create_document.json() == {"contentType": "application/json; charset=UTF-8"}
    (create_feed,) = amazon.calls(const.CREATE_FEED)
    _validate(_swagger_validator(feeds_model, "CreateFeedSpecification"), create_feed.json())
    assert create_feed.json() == {
        "feedType": "JSON_LISTINGS_FEED",
        "marketplaceIds": [US],
        "inputFeedDocumentId": "doc-1",
    }
    # The S3 calls carry no SP-API token.
    for sent in amazon.calls(const.UPLOAD_FEED_DOCUMENT) + amazon.calls(
        const.DOWNLOAD_FEED_DOCUMENT
    ):
        assert "x-amz-access-token" not in sent.request.headers


def test_the_official_feed_example_validates_against_its_schema() -> None:
    # A check of the check: the validator accepts Amazon's own example document.
    schema = load_spec("schemas", "feeds", "listings-feed-schema-v2.json")
    example = load_spec("schemas", "feeds", "listings-feed-schema-v2.example.json")
    _validate(jsonschema.Draft7Validator(schema), example)
