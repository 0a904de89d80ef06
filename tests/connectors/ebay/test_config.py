"""A `kind = "ebay"` channel file: validated, and turned into a connector by the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.channels import EbayChannel
from config.loader import ConfigError, load_config
from connectors.ebay import EbayConnector
from connectors.registry import connector_for
from tests.support.daemon import DaemonConfig

pytestmark = pytest.mark.anyio
ENV = {
    "ADMIN_TOKEN_VAR": "admin-token-value",
    "EBAY_SECRET": "ebay-secret-value-31",
    "EBAY_REFRESH": "v^1.1#ebay-refresh-value-32",
    "EBAY_VERIFY": "verify-token-value-33-abcdefghijklmnopqrstuvwxyz",
}
BASE = (
    'kind = "ebay"\nclient_id = "Example-App-PRD"\nclient_secret = "env:EBAY_SECRET"\n'
    'refresh_token = "env:EBAY_REFRESH"\nverification_token = "env:EBAY_VERIFY"\n'
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def write(tmp_path: Path, body: str) -> Path:
    config = DaemonConfig(
        root=tmp_path,
        database_url=None,
        admin_token_env="ADMIN_TOKEN_VAR",
        channels={"ebay-uk": body},
    )
    return config.write()


async def test_an_ebay_file_builds_a_connector(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        BASE + 'marketplace_id = "EBAY_GB"\nstock_api = "inventory"\n'
        'notification_endpoint_url = "https://sync.example.com/webhooks/ebay-uk"\n'
        'api_base_url = "http://127.0.0.1:9003"\n'
        'trading_api_url = "http://127.0.0.1:9003/ws/api.dll"\n'
        "[daily_call_limits]\ntrading = 1500000\n",
    )
    channel = load_config(root, env=ENV).channels["ebay-uk"]
    assert isinstance(channel, EbayChannel)
    factory = connector_for("ebay")
    assert factory is not None
    connector = factory(channel)
    try:
        assert isinstance(connector, EbayConnector)
        settings = connector.settings
        assert (connector.name, settings.marketplace_id, settings.stock_api) == (
            "ebay-uk",
            "EBAY_GB",
            "inventory",
        )
        assert settings.api_base_url == "http://127.0.0.1:9003/"
        assert settings.identity_url == "https://api.ebay.com/identity/v1/oauth2/token"
        assert settings.notification_endpoint_url == "https://sync.example.com/webhooks/ebay-uk"
        assert {q.api: q.limit for q in connector.status().quotas}["trading"] == 1500000
        assert connector.capabilities.max_stock_batch == 25
        for secret in ENV.values():
            assert secret not in repr(settings) and secret not in repr(channel)
        assert len(connector.challenge_response("code-1")) == 64
    finally:
        await connector.aclose()


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("[daily_call_limits]\ntrading = 0\n", "daily_call_limits"),
        ("[daily_call_limits]\nshopping = 10\n", "daily_call_limits"),
        ('stock_api = "both"\n', "stock_api"),
        ('marketplace_id = "GB"\n', "marketplace_id"),
        ("revisions_per_day = 300\n", "revisions_per_day"),
    ],
)
def test_a_bad_ebay_file_is_refused_naming_the_key(tmp_path: Path, line: str, key: str) -> None:
    root = write(tmp_path, BASE + line)
    with pytest.raises(ConfigError) as caught:
        load_config(root, env=ENV)
    problems = [str(p) for p in caught.value.problems]
    assert any("ebay-uk.toml" in p and key in p for p in problems), problems
