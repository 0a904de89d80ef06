"""No secret value ever reaches stdout, stderr or an HTTP response: canaries prove it."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.support.daemon import Daemon, DaemonConfig

CANARY_ADMIN = "canary-admin-Zq81vLx0Tt"
CANARY_SHOP_TOKEN = "canary-shpat-8Hk2mQ0pX"
CANARY_SHOP_SECRET = "canary-shpss-3Jd9wR4sB"
CANARY_LWA_SECRET = "canary-lwa-5Fh7nY2cK"
CANARY_REFRESH = "canary-refresh-9Gq4tU1eM"
CANARY_EBAY_SECRET = "canary-ebay-2Lp6vW8zA"
CANARY_VERIFY = "canary-verify-7Nc3xE5rD"
CANARIES = [
    CANARY_ADMIN,
    CANARY_SHOP_TOKEN,
    CANARY_SHOP_SECRET,
    CANARY_LWA_SECRET,
    CANARY_REFRESH,
    CANARY_EBAY_SECRET,
    CANARY_VERIFY,
]

SHOPIFY = """
kind = "shopify"
shop = "canary-shop.myshopify.com"
access_token = "env:CANARY_SHOP_TOKEN"
webhook_secrets = ["file:shopify-secret"]
"""
AMAZON = """
kind = "amazon"
seller_id = "A2EXAMPLE"
region = "na"
marketplace_ids = ["ATVPDKIKX0DER"]
lwa_client_id = "amzn1.application-oa2-client.example"
lwa_client_secret = "env:CANARY_LWA_SECRET"
refresh_token = "env:CANARY_REFRESH"
"""
EBAY = """
kind = "ebay"
client_id = "Example-App-PRD"
client_secret = "env:CANARY_EBAY_SECRET"
refresh_token = "env:CANARY_REFRESH"
verification_token = "env:CANARY_VERIFY"
"""


def test_no_canary_in_output_or_responses(tmp_path: Path) -> None:
    config = DaemonConfig(
        root=tmp_path / "cfg",
        database_url=None,
        channels={"shopify-main": SHOPIFY, "amazon-us": AMAZON, "ebay-us": EBAY},
    )
    config.write()
    secret_file = config.root / "shopify-secret"
    secret_file.write_text(CANARY_SHOP_SECRET + "\n")
    secret_file.chmod(0o600)
    env = {
        config.admin_token_env: CANARY_ADMIN,
        "CANARY_SHOP_TOKEN": CANARY_SHOP_TOKEN,
        "CANARY_LWA_SECRET": CANARY_LWA_SECRET,
        "CANARY_REFRESH": CANARY_REFRESH,
        "CANARY_EBAY_SECRET": CANARY_EBAY_SECRET,
        "CANARY_VERIFY": CANARY_VERIFY,
        "CHANNEL_SYNC_LOGGING__LEVEL": "DEBUG",
    }
    daemon = Daemon(config, env).start()
    responses: list[httpx.Response] = []
    try:
        daemon.wait_healthy()
        admin, hooks = config.admin_url, config.webhooks_url
        good = {"Authorization": f"Bearer {CANARY_ADMIN}"}
        for path in ("/api/status", "/readyz", "/metrics", "/healthz"):
            responses.append(httpx.get(admin + path, headers=good))
        responses.append(
            httpx.post(
                f"{hooks}/webhooks/shopify-main",
                content=b'{"id": 1}',
                headers={
                    "X-Shopify-Hmac-Sha256": "bm90LXJpZ2h0",
                    "X-Shopify-Topic": "orders/create",
                },
            )
        )
        responses.append(httpx.get(f"{hooks}/webhooks/ebay-us?challenge_code=abc"))
        status = httpx.get(admin + "/api/status", headers=good).json()
        assert {c["name"] for c in status["channels"]} == {"shopify-main", "amazon-us", "ebay-us"}
        bad_headers = [
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Bearer {CANARY_ADMIN}x"},
            {"Authorization": f"Basic {CANARY_ADMIN}"},
            {"Authorization": CANARY_ADMIN},
        ]
        bad_answers = []  # last: after 10 bad tokens this address is answered 429 for a minute
        for headers in bad_headers:
            for path in ("/api/status", "/readyz", "/metrics", "/api/nothing"):
                bad_answers.append(httpx.get(admin + path, headers=headers))
        assert [r.status_code for r in bad_answers] == [401] * 10 + [429] * 10
        responses.extend(bad_answers)
        assert daemon.stop(signal.SIGTERM) == 0
    finally:
        daemon.kill()

    output = daemon.output()
    assert "listening on" in output  # the daemon did log, at DEBUG
    seen = [r.text + repr(dict(r.headers)) for r in responses]
    for canary in CANARIES:
        assert canary not in output, f"a secret ({canary[:12]}...) reached the daemon's output"
        for text in seen:
            assert canary not in text, "a secret reached an HTTP response"
