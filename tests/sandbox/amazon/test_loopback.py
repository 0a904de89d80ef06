"""The runner on real loopback sockets: `python -m sandbox.amazon --start-sqs` serves LWA and the
SP-API over HTTP, posts ORDER_CHANGE to a queue on moto's SQS server (read back here with
aiobotocore), serves feed transfers from its own presigned URLs, holds an answer past a client's
timeout after applying the call; a second runner uses the first one's SQS server by URL; the
python-amazon-sp-api SDK the connector builds on can talk to it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.amazon.cli import main
from sandbox.amazon.sqs import sqs_client
from tests.sandbox.amazon.process import AmazonProcess
from tests.support.daemon import wait_for

US = "ATVPDKIKX0DER"
AVAILABILITY = "/attributes/fulfillment_availability"


def _receive(endpoint: str, queue_url: str, wanted: int) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        bodies: list[dict[str, Any]] = []
        async with sqs_client(endpoint) as client:
            for _ in range(10):
                answer = await client.receive_message(
                    QueueUrl=queue_url, WaitTimeSeconds=2, MaxNumberOfMessages=10
                )
                for message in answer.get("Messages", []):
                    bodies.append(json.loads(message["Body"]))
                    await client.delete_message(
                        QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"]
                    )
                if len(bodies) >= wanted:
                    break
        return bodies

    return asyncio.run(run())


def _patch(quantity: int) -> dict[str, Any]:
    return {
        "productType": "PRODUCT",
        "patches": [
            {
                "op": "replace",
                "path": AVAILABILITY,
                "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": quantity}],
            }
        ],
    }


def test_the_runner_serves_the_api_and_posts_order_changes_to_sqs(tmp_path: Path) -> None:
    args = [
        "--start-sqs",
        "--sqs-queue",
        "orders",
        "--client-id",
        "cid",
        "--client-secret",
        "csecret",
        "--refresh-token",
        "Atzr|rt",
        "--listing",
        "A=5@9.99",
    ]
    with AmazonProcess(tmp_path, args) as amazon:
        info = amazon.info
        assert (amazon.ready.stat().st_mode & 0o777) == 0o600
        assert info["client_secret"] == "csecret"
        assert info["sqs_queue_url"].endswith("/orders")
        assert info["sqs_endpoint_url"].startswith("http://127.0.0.1:")
        amazon.login()

        placed = amazon.control("POST", "/orders", {"lines": [{"sku": "A", "quantity": 2}]})
        (message,) = _receive(info["sqs_endpoint_url"], info["sqs_queue_url"], 1)
        assert message["NotificationType"] == "ORDER_CHANGE"
        assert message["Payload"]["OrderChangeNotification"]["AmazonOrderId"] == placed["order_id"]
        assert amazon.control("GET", "/inventory") == {"A": 3}

        found = amazon.api(
            "GET",
            "/orders/2026-01-01/orders",
            params={"lastUpdatedAfter": "2020-01-01T00:00:00Z", "marketplaceIds": US},
        )
        assert [o["orderId"] for o in found.json()["orders"]] == [placed["order_id"]]

        # The feed flow through the sandbox's own presigned URLs.
        created = amazon.api(
            "POST", "/feeds/2021-06-30/documents", json={"contentType": "application/json"}
        ).json()
        assert created["url"].startswith(info["url"] + "/_feeds/upload/")
        document = {
            "header": {"sellerId": info["seller_id"], "version": "2.0"},
            "messages": [
                {
                    "messageId": 1,
                    "sku": "A",
                    "operationType": "PATCH",
                    "productType": "PRODUCT",
                    "patches": _patch(8)["patches"],
                }
            ],
        }
        assert (
            httpx.put(
                created["url"],
                content=json.dumps(document),
                headers={"Content-Type": "application/json"},
            ).status_code
            == 200
        )
        feed_id = amazon.api(
            "POST",
            "/feeds/2021-06-30/feeds",
            json={
                "feedType": "JSON_LISTINGS_FEED",
                "marketplaceIds": [US],
                "inputFeedDocumentId": created["feedDocumentId"],
            },
        ).json()["feedId"]
        wait_for(
            lambda: (
                amazon.api("GET", f"/feeds/2021-06-30/feeds/{feed_id}").json()["processingStatus"]
                == "DONE"
            ),
            timeout=20,
            what="the feed to be processed",
        )
        assert amazon.control("GET", "/inventory") == {"A": 8}

        # A timeout: the patch is applied, its answer held past the client's timeout.
        amazon.control(
            "POST", "/faults", {"next": {"patchListingsItem": ["timeout"]}, "timeout_delay_s": 30}
        )
        with pytest.raises(httpx.ReadTimeout):
            amazon.api(
                "PATCH",
                f"/listings/2021-08-01/items/{info['seller_id']}/A",
                params={"marketplaceIds": US},
                json=_patch(4),
                timeout=0.5,
            )
        assert amazon.control("GET", "/inventory") == {"A": 4}
        calls = amazon.control("GET", "/calls")
        assert calls["faulted"] == {"patchListingsItem": 1}
        assert calls["throttled"] == {}

        assert amazon.stop() == 0


def test_a_runner_can_post_to_an_sqs_server_given_by_url(tmp_path: Path) -> None:
    with AmazonProcess(tmp_path, ["--start-sqs"], name="first") as first:
        endpoint = first.info["sqs_endpoint_url"]
        args = ["--sqs-endpoint", endpoint, "--sqs-queue", "second", "--listing", "B=2"]
        with AmazonProcess(tmp_path, args, name="second") as second:
            assert second.info["sqs_endpoint_url"] == endpoint
            placed = second.control("POST", "/orders", {"lines": [{"sku": "B", "quantity": 1}]})

            (message,) = _receive(endpoint, second.info["sqs_queue_url"], 1)

            assert (
                message["Payload"]["OrderChangeNotification"]["AmazonOrderId"] == placed["order_id"]
            )
            assert second.stop() == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--host", "0.0.0.0"],
        ["--sqs-endpoint", "http://192.0.2.1:4566"],
        ["--marketplace", "XX"],
        ["--listing", "A=many"],
        ["--start-sqs", "--sqs-endpoint", "http://127.0.0.1:4566"],
    ],
)
def test_the_runner_refuses_bad_arguments(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)

    assert stopped.value.code == 2
    assert capsys.readouterr().err


def test_the_sp_api_sdk_talks_to_the_sandbox(tmp_path: Path) -> None:
    orders_module = pytest.importorskip("sp_api.asyncio.api.orders.orders_2026_01_01")
    listings_module = pytest.importorskip(
        "sp_api.asyncio.api.listings_items.listings_items_2021_08_01"
    )
    auth_module = pytest.importorskip("sp_api.asyncio.auth")
    with AmazonProcess(tmp_path, ["--listing", "A=5"]) as amazon:
        info = amazon.info
        amazon.control("POST", "/orders", {"lines": [{"sku": "A", "quantity": 1}]})
        host = info["url"].removeprefix("http://")

        class LoopbackToken(auth_module.AccessTokenClient):  # type: ignore[misc]
            scheme = "http://"

        LoopbackToken.host = host
        credentials = {"lwa_app_id": info["client_id"], "lwa_client_secret": info["client_secret"]}

        async def run() -> tuple[Any, Any]:
            orders = orders_module.OrdersV20260101(
                refresh_token=info["refresh_token"],
                credentials=credentials,
                auth_token_client_class=LoopbackToken,
            )
            listings = listings_module.ListingsItemsV20210801(
                refresh_token=info["refresh_token"],
                credentials=credentials,
                auth_token_client_class=LoopbackToken,
            )
            orders.endpoint = listings.endpoint = info["url"]
            try:
                found = await orders.search_orders(
                    lastUpdatedAfter="2020-01-01T00:00:00Z",
                    marketplaceIds=[US],
                    includedData=["FULFILLMENT"],
                )
                patched = await listings.patch_listings_item(
                    info["seller_id"], "A", marketplaceIds=[US], body=_patch(9)
                )
            finally:
                for client in (orders, listings):
                    await client.aclose()
                    await client._auth._transport.aclose()  # the SDK leaves its LWA client open
            return found, patched

        found, patched = asyncio.run(run())

        assert [o["fulfillment"]["fulfillmentStatus"] for o in found.payload["orders"]] == [
            "UNSHIPPED"
        ]
        assert patched.payload["status"] == "ACCEPTED"
        assert amazon.control("GET", "/inventory") == {"A": 9}
