"""The sandbox against Amazon's own models (read here straight from ../shared/specs): every answer
it builds validates, every `x-amzn-api-sandbox` static example of the operations it serves is
answered as the model says for its request, and request checks come from the models."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.sandbox.amazon.conftest import (
    AVAILABILITY,
    MODELS,
    SELLER,
    US,
    Seller,
    SellerFactory,
    amazon_file,
    availability,
    model_problems,
)
from tests.support.specs import SPECS_DIR

pytestmark = pytest.mark.anyio

OPERATIONS = {
    "searchOrders": ("orders", "/orders/2026-01-01/orders", "get"),
    "getOrder": ("orders", "/orders/2026-01-01/orders/{orderId}", "get"),
    "getOrders": ("ordersV0", "/orders/v0/orders", "get"),
    "getOrderItems": ("ordersV0", "/orders/v0/orders/{orderId}/orderItems", "get"),
    "confirmShipment": ("ordersV0", "/orders/v0/orders/{orderId}/shipmentConfirmation", "post"),
    "patchListingsItem": ("listings", "/listings/2021-08-01/items/{sellerId}/{sku}", "patch"),
    "getListingsItem": ("listings", "/listings/2021-08-01/items/{sellerId}/{sku}", "get"),
    "createFeedDocument": ("feeds", "/feeds/2021-06-30/documents", "post"),
    "createFeed": ("feeds", "/feeds/2021-06-30/feeds", "post"),
    "getFeed": ("feeds", "/feeds/2021-06-30/feeds/{feedId}", "get"),
    "getFeedDocument": ("feeds", "/feeds/2021-06-30/documents/{feedDocumentId}", "get"),
    "createReport": ("reports", "/reports/2021-06-30/reports", "post"),
    "getReport": ("reports", "/reports/2021-06-30/reports/{reportId}", "get"),
    "getReportDocument": ("reports", "/reports/2021-06-30/documents/{reportDocumentId}", "get"),
}
PATCH_BODY = {
    "productType": "PRODUCT",
    "patches": [{"op": "replace", "path": AVAILABILITY, "value": availability(1)}],
}


def _answer_problems(operation: str, answer: httpx.Response) -> list[str]:
    """What is wrong with an answer by the operation's model (status declared, body schema)."""
    model, path, method = OPERATIONS[operation]
    responses = amazon_file(MODELS[model])["paths"][path][method]["responses"]
    declared = responses.get(str(answer.status_code))
    if declared is None:
        return [f"status {answer.status_code} is not declared"]
    schema = declared.get("schema")
    if schema is None:
        return [] if not answer.content else ["a body where the model has none"]
    ref = schema["$ref"].rsplit("/", 1)[-1]
    return model_problems(model, ref, answer.json())


def _static_examples() -> list[Any]:
    if not SPECS_DIR.exists():  # the test itself then skips (or fails under CI) saying why
        return [pytest.param("searchOrders", 200, {}, id="specs-absent")]
    cases = []
    for operation, (model, path, method) in OPERATIONS.items():
        for status, response in amazon_file(MODELS[model])["paths"][path][method][
            "responses"
        ].items():
            for n, example in enumerate(response.get("x-amzn-api-sandbox", {}).get("static", [])):
                given = example["request"]["parameters"]
                if not any(isinstance(v, dict) and "value" in v for v in given.values()):
                    continue  # names no value: it would shadow every request, so it is not served
                cases.append(
                    pytest.param(operation, int(status), example, id=f"{operation}-{status}-{n}")
                )
    return cases


def _request_of(operation: str, example: dict[str, Any]) -> tuple[str, str, dict[str, str], Any]:
    """(method, path, query, body) that carry the example's parameter values."""
    model, path, method = OPERATIONS[operation]
    spec = amazon_file(MODELS[model])["paths"][path]
    parameters = {p["name"]: p for p in [*spec.get("parameters", []), *spec[method]["parameters"]]}
    values = {k: v["value"] for k, v in example["request"]["parameters"].items() if "value" in v}
    defaults = {
        "sellerId": SELLER,
        "sku": "SKU",
        "orderId": "113-0000000-0000000",
        "feedId": "1",
        "feedDocumentId": "1",
        "reportId": "1",
        "reportDocumentId": "1",
    }
    filled = path
    for name in defaults:
        filled = filled.replace("{" + name + "}", str(values.pop(name, defaults[name])))
    body = values.pop("body", values.pop("payload", PATCH_BODY if method == "patch" else None))
    query = {}
    for name, value in values.items():
        kind = parameters.get(name, {}).get("type")
        query[name] = ",".join(value) if kind == "array" else str(value)
    return method.upper(), filled, query, body


@pytest.mark.parametrize(("operation", "status", "example"), _static_examples())
async def test_static_examples_are_served_for_their_requests(
    seller: Seller, operation: str, status: int, example: dict[str, Any]
) -> None:
    method, path, query, body = _request_of(operation, example)

    answer = await seller.api(method, path, params=query, json=body)

    assert answer.status_code == status, answer.text
    if example["response"] in ({}, None):
        assert answer.content == b""
    else:
        assert answer.json() == example["response"]
    assert (await seller.control("GET", "/calls"))["examples_served"] == {operation: 1}


async def test_every_answer_the_sandbox_builds_validates_against_the_models(seller: Seller) -> None:
    checked: list[tuple[str, httpx.Response]] = []

    async def call(operation: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        answer = await seller.api(method, path, **kwargs)
        checked.append((operation, answer))
        return answer

    await seller.list(A=5, B=5)
    await seller.control(
        "POST",
        "/listings",
        {"listings": [{"sku": "F", "quantity": 5, "fulfillment_channel": "AMAZON_NA"}]},
    )
    placed = await seller.order(A=2, B=1)
    await seller.order(pending=True, A=1)
    await seller.order(F=1)
    cancelled = await seller.order(B=1)
    await seller.control("POST", "/cancel", {"order_id": cancelled["order_id"]})
    order_id, item = placed["order_id"], placed["items"][0]["order_item_id"]
    every = "BUYER,RECIPIENT,PROCEEDS,EXPENSE,PROMOTION,CANCELLATION,FULFILLMENT,PACKAGES,TAX,PAYMENT,FULFILLMENT_ORDERS"

    await call(
        "confirmShipment",
        "POST",
        f"/orders/v0/orders/{order_id}/shipmentConfirmation",
        json={
            "marketplaceId": US,
            "packageDetail": {
                "packageReferenceId": "1",
                "carrierCode": "UPS",
                "trackingNumber": "1Z",
                "shipDate": "2026-05-01T11:00:00Z",
                "orderItems": [{"orderItemId": item, "quantity": 2}],
            },
        },
    )
    await call(
        "confirmShipment",
        "POST",
        f"/orders/v0/orders/{order_id}/shipmentConfirmation",
        json={
            "marketplaceId": US,
            "packageDetail": {
                "packageReferenceId": "2",
                "carrierCode": "UPS",
                "trackingNumber": "1Z",
                "shipDate": "2026-05-01T11:00:00Z",
                "orderItems": [{"orderItemId": item, "quantity": 9}],
            },
        },
    )
    await call(
        "confirmShipment",
        "POST",
        "/orders/v0/orders/113-0000000-0000000/shipmentConfirmation",
        json={
            "marketplaceId": US,
            "packageDetail": {
                "packageReferenceId": "1",
                "carrierCode": "UPS",
                "trackingNumber": "1Z",
                "shipDate": "2026-05-01T11:00:00Z",
                "orderItems": [{"orderItemId": item, "quantity": 1}],
            },
        },
    )
    await call(
        "searchOrders",
        "GET",
        "/orders/2026-01-01/orders",
        params={
            "lastUpdatedAfter": "2020-01-01T00:00:00Z",
            "includedData": every,
            "maxResultsPerPage": "2",
        },
    )
    await call(
        "searchOrders",
        "GET",
        "/orders/2026-01-01/orders",
        params={"createdAfter": "2020-01-01T00:00:00Z", "createdBefore": "2026-05-01T11:00:00Z"},
    )
    await call(
        "searchOrders",
        "GET",
        "/orders/2026-01-01/orders",
        params={"createdAfter": "2020-01-01T00:00:00Z", "maxResultsPerPage": "0"},
    )
    await call(
        "getOrder", "GET", f"/orders/2026-01-01/orders/{order_id}", params={"includedData": every}
    )
    await call("getOrder", "GET", "/orders/2026-01-01/orders/113-0000000-0000000")
    await call(
        "getOrders",
        "GET",
        "/orders/v0/orders",
        params={
            "LastUpdatedAfter": "2020-01-01T00:00:00Z",
            "MarketplaceIds": US,
            "MaxResultsPerPage": "2",
        },
    )
    await call("getOrderItems", "GET", f"/orders/v0/orders/{order_id}/orderItems")
    await call(
        "patchListingsItem",
        "PATCH",
        f"/listings/2021-08-01/items/{SELLER}/A",
        params={"marketplaceIds": US, "includedData": "identifiers"},
        json=PATCH_BODY,
    )
    await call(
        "patchListingsItem",
        "PATCH",
        f"/listings/2021-08-01/items/{SELLER}/F",
        params={"marketplaceIds": US},
        json=PATCH_BODY,
    )
    await call(
        "getListingsItem",
        "GET",
        f"/listings/2021-08-01/items/{SELLER}/A",
        params={
            "marketplaceIds": US,
            "includedData": "summaries,attributes,issues,fulfillmentAvailability",
        },
    )
    await call(
        "getListingsItem",
        "GET",
        f"/listings/2021-08-01/items/{SELLER}/NOPE",
        params={"marketplaceIds": US},
    )
    document = await call(
        "createFeedDocument",
        "POST",
        "/feeds/2021-06-30/documents",
        json={"contentType": "application/json; charset=UTF-8"},
    )
    await seller.http.put(
        document.json()["url"],
        content=b"{}",
        headers={"Content-Type": "application/json; charset=UTF-8"},
    )
    feed = await call(
        "createFeed",
        "POST",
        "/feeds/2021-06-30/feeds",
        json={
            "feedType": "JSON_LISTINGS_FEED",
            "marketplaceIds": [US],
            "inputFeedDocumentId": document.json()["feedDocumentId"],
        },
    )
    for _ in range(3):
        seller.clock.advance(0.3)
        await call("getFeed", "GET", f"/feeds/2021-06-30/feeds/{feed.json()['feedId']}")
    result = checked[-1][1].json()["resultFeedDocumentId"]
    await call("getFeedDocument", "GET", f"/feeds/2021-06-30/documents/{result}")
    await call("getFeedDocument", "GET", "/feeds/2021-06-30/documents/nope")
    for _ in range(6):
        await call(
            "patchListingsItem",
            "PATCH",
            f"/listings/2021-08-01/items/{SELLER}/A",
            params={"marketplaceIds": US},
            json=PATCH_BODY,
        )

    statuses = {(operation, answer.status_code) for operation, answer in checked}
    assert {
        ("confirmShipment", 204),
        ("confirmShipment", 400),
        ("confirmShipment", 404),
        ("searchOrders", 400),
        ("getOrder", 404),
        ("patchListingsItem", 429),
    } <= statuses
    problems = {f"{op} {a.status_code}": _answer_problems(op, a) for op, a in checked}
    assert {k: v for k, v in problems.items() if v} == {}


async def test_request_bodies_are_checked_against_the_models(seller: Seller) -> None:
    await seller.list(A=5)
    placed = await seller.order(A=1)

    answer = await seller.api(
        "POST",
        f"/orders/v0/orders/{placed['order_id']}/shipmentConfirmation",
        json={
            "marketplaceId": US,
            "packageDetail": {
                "packageReferenceId": "1",
                "carrierCode": "UPS",
                "trackingNumber": "1Z",
                "shipDate": "2026-05-01T11:00:00Z",
                "orderItems": [
                    {"orderItemId": placed["items"][0]["order_item_id"], "quantity": "1"}
                ],
            },
        },
    )

    assert answer.status_code == 400
    assert "quantity" in answer.json()["errors"][0]["message"]
    assert (await seller.control("GET", "/fulfillments"))["fulfillments"] == []


async def test_without_the_models_the_sandbox_still_serves_with_its_own_checks(
    make_seller: SellerFactory,
) -> None:
    seller: Seller = await make_seller(validate=False)
    await seller.list(A=5)

    example = await seller.api(
        "GET", "/orders/2026-01-01/orders", params={"createdAfter": "TEST_CASE_400"}
    )
    no_type = await seller.api(
        "PATCH",
        f"/listings/2021-08-01/items/{SELLER}/A",
        params={"marketplaceIds": US},
        json={"patches": PATCH_BODY["patches"]},
    )

    assert example.status_code == 400
    assert "createdAfter" in example.json()["errors"][0]["message"]
    assert no_type.status_code == 400
    assert (await seller.patch("A", availability(3))).json()["status"] == "ACCEPTED"
    described = await seller.control("GET", "/seller")
    assert described["schema_validation"] is False
