"""The runner on real loopback sockets: `python -m sandbox.ebay` answers the `ebaysdk` Trading
client the connector uses, pushes a signed notification to an endpoint after eBay's challenge,
and holds an answer past a client's timeout after creating the package (so only a read before
re-sending keeps a shipment single)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sandbox.ebay.const import API_SCOPE
from tests.sandbox.ebay.process import EbayProcess, NotificationEndpoint

TOKEN = "loopback-verification-token-0123456789"
ORDERS = "/sell/fulfillment/v1/order"


def test_the_runner_serves_ebaysdk_pushes_signed_messages_and_times_out(tmp_path: Path) -> None:
    trading = pytest.importorskip("ebaysdk.trading")
    exception = pytest.importorskip("ebaysdk.exception")
    with NotificationEndpoint(TOKEN) as endpoint:
        args = [
            "--listing",
            "A=5@9.99",
            "--inventory-listing",
            "I=3",
            "--variation",
            "G:G-S=2",
            "--notify-url",
            endpoint.url,
            "--verification-token",
            TOKEN,
        ]
        with EbayProcess(tmp_path, args) as ebay:
            info = ebay.info
            assert (ebay.ready.stat().st_mode & 0o777) == 0o600
            assert set(info["listings"]) == {"A", "I", "G-S"}
            user_token = ebay.token()

            # The Trading API through ebaysdk, as the connector calls it.
            api = trading.Connection(
                domain=info["url"].removeprefix("http://"),
                appid=info["client_id"],
                devid="sandbox-dev",
                certid=info["client_secret"],
                iaf_token=user_token,
                config_file=None,
                siteid="0",
                timeout=10,
            )
            api.config.set("https", False, force=True)
            item = info["listings"]["A"]["item_id"]
            reply = api.execute(
                "ReviseInventoryStatus", {"InventoryStatus": [{"ItemID": item, "Quantity": 7}]}
            ).reply
            assert reply.Ack == "Success" and reply.InventoryStatus.Quantity == "7"
            with pytest.raises(exception.ConnectionError):
                api.execute(
                    "ReviseInventoryStatus",
                    {"InventoryStatus": [{"ItemID": item, "Quantity": n} for n in range(5)]},
                )
            assert ebay.control("GET", "/inventory") == {"A": 7, "G-S": 2, "I": 3}

            # A buyer's order: the endpoint is challenged, then gets a signed message.
            placed = ebay.control("POST", "/orders", {"lines": [{"sku": "A", "quantity": 1}]})
            body, signature = endpoint.next()
            assert endpoint.challenges == 1
            message = json.loads(body)
            assert message["notification"]["data"]["orderId"] == placed["order_id"]
            header = json.loads(base64.b64decode(signature))
            app_token = ebay.token("client_credentials", scope=API_SCOPE)
            served = httpx.get(
                f"{info['url']}/commerce/notification/v1/public_key/{header['kid']}",
                headers={"Authorization": f"Bearer {app_token}"},
                timeout=10,
            ).json()
            key_body = served["key"].removeprefix("-----BEGIN PUBLIC KEY-----")
            key_body = key_body.removesuffix("-----END PUBLIC KEY-----")
            pem = f"-----BEGIN PUBLIC KEY-----\n{key_body}\n-----END PUBLIC KEY-----\n"
            key = serialization.load_pem_public_key(pem.encode())
            assert isinstance(key, ec.EllipticCurvePublicKey)
            key.verify(
                base64.b64decode(header["signature"]),
                json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode(),
                ec.ECDSA(hashes.SHA1()),  # noqa: S303 - eBay's scheme
            )

            # A timeout after applying: the package exists though the caller saw no answer.
            ebay.control(
                "POST",
                "/faults",
                {"next": {"createShippingFulfillment": ["timeout"]}, "timeout_delay_s": 30},
            )
            package = {
                "lineItems": [
                    {"lineItemId": placed["line_items"][0]["line_item_id"], "quantity": 1}
                ],
                "shippingCarrierCode": "USPS",
                "trackingNumber": "9400111",
            }
            bearer = {"Authorization": f"Bearer {user_token}"}
            path = f"{info['url']}{ORDERS}/{placed['order_id']}/shipping_fulfillment"
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(path, json=package, headers=bearer, timeout=0.5)
            listed = httpx.get(path, headers=bearer, timeout=10).json()
            assert [f["shipmentTrackingNumber"] for f in listed["fulfillments"]] == ["9400111"]
            assert ebay.control("GET", "/calls")["faulted"] == {"createShippingFulfillment": 1}

            assert ebay.stop() == 0
