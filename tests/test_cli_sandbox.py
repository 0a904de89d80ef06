"""`channel-sync sandbox`: the sandbox marketplaces on loopback, their addresses printed, their
secrets only in the ready file."""

from __future__ import annotations

import asyncio
import json
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

import httpx

from sandbox.amazon.sqs import sqs_client
from sandbox.demo_catalogue import DEMO_CATALOGUE
from tests.support.daemon import CHANNEL_SYNC, free_port, wait_for

SECRET_KEYS = ("token", "secret", "client_secret", "refresh_token", "verification_token")


def inventory(entry: dict[str, Any]) -> dict[str, int]:
    answer = httpx.get(f"{entry['sandbox_url']}/_sandbox/inventory", timeout=10)
    assert answer.status_code == 200, answer.text
    shown: dict[str, int] = answer.json()
    return shown


async def receive_notifications(endpoint: str, queue_url: str) -> list[dict[str, Any]]:
    """What the queue holds now (long poll of a few seconds)."""
    async with sqs_client(endpoint) as client:
        answer = await client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=5
        )
    return [json.loads(message["Body"]) for message in answer.get("Messages", [])]


def test_sandbox_serves_every_marketplace_with_the_catalogue_and_prints_where(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "sandboxes.json"
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    amazon_port, ebay_port = free_port(), free_port()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                CHANNEL_SYNC,
                "sandbox",
                "--ready-file",
                str(ready),
                "--amazon-port",
                str(amazon_port),
                "--ebay-port",
                str(ebay_port),
            ],
            stdout=stdout,
            stderr=stderr,
        )
    try:
        wait_for(
            lambda: ready.exists() or proc.poll() is not None,
            timeout=60,
            what="the sandboxes' ready file",
        )
        assert proc.poll() is None, err.read_text()
        assert stat.S_IMODE(ready.stat().st_mode) == 0o600
        info = json.loads(ready.read_text())["sandboxes"]
        assert set(info) == {"shopify", "amazon", "ebay", "reference"}
        shopify, amazon, ebay, reference = (
            info[k] for k in ("shopify", "amazon", "ebay", "reference")
        )
        assert amazon["sandbox_url"] == f"http://127.0.0.1:{amazon_port}"
        assert ebay["sandbox_url"] == f"http://127.0.0.1:{ebay_port}"

        listed = {sku: units for sku, units, _ in DEMO_CATALOGUE.listed()}
        assert len(listed) == 50
        assert listed["GIFT-MUG-PAIR"] == 12  # 25 blue mugs make 12 pairs
        for entry in (shopify, amazon, ebay):
            assert inventory(entry) == listed, entry["kind"]

        # Each marketplace's API takes the credentials of the ready file.
        shop = httpx.get(f"{shopify['sandbox_url']}/_sandbox/shop", timeout=10).json()
        assert shop["domain"] == shopify["shop"] == "sandbox.myshopify.com"
        api = httpx.post(
            f"{shopify['api_base_url']}/admin/api/2026-04/graphql.json",
            json={"query": "{ shop { name } }"},
            headers={"X-Shopify-Access-Token": shopify["token"]},
            timeout=10,
        )
        assert api.status_code == 200 and "errors" not in api.json(), api.text
        lwa = httpx.post(
            amazon["lwa_token_url"],
            data={
                "grant_type": "refresh_token",
                "refresh_token": amazon["refresh_token"],
                "client_id": amazon["client_id"],
                "client_secret": amazon["client_secret"],
            },
            timeout=10,
        )
        assert lwa.status_code == 200, lwa.text
        oauth = httpx.post(
            ebay["identity_url"],
            data={"grant_type": "refresh_token", "refresh_token": ebay["refresh_token"]},
            auth=(ebay["client_id"], ebay["client_secret"]),
            timeout=10,
        )
        assert oauth.status_code == 200, oauth.text
        calls = httpx.get(f"{reference['sandbox_url']}/_sandbox/calls", timeout=10)
        assert calls.status_code == 200, calls.text

        # Amazon's ORDER_CHANGE goes to the queue on the loopback SQS server.
        assert amazon["sqs_endpoint_url"].startswith("http://127.0.0.1:")
        placed = httpx.post(
            f"{amazon['sandbox_url']}/_sandbox/orders",
            json={"lines": [{"sku": "TEA-GREEN", "quantity": 1}]},
            timeout=10,
        )
        assert placed.status_code == 201, placed.text
        notices = wait_for(
            lambda: asyncio.run(
                receive_notifications(amazon["sqs_endpoint_url"], amazon["sqs_queue_url"])
            ),
            timeout=30,
            what="ORDER_CHANGE on the SQS queue",
        )
        order_ids = {n["Payload"]["OrderChangeNotification"]["AmazonOrderId"] for n in notices}
        assert placed.json()["order_id"] in order_ids

        printed = out.read_text() + err.read_text()
        for entry in info.values():
            assert entry["sandbox_url"] in printed
        secrets = [entry[key] for entry in info.values() for key in SECRET_KEYS if entry.get(key)]
        assert len(secrets) >= 7
        for secret in secrets:
            assert secret not in printed
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    assert code == 0, err.read_text()


def test_sandbox_refuses_a_non_loopback_address(tmp_path: Path) -> None:
    done = subprocess.run(
        [CHANNEL_SYNC, "sandbox", "--host", "0.0.0.0"],  # refused, never bound
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert b"loopback" in done.stderr
