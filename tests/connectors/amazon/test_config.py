"""A `kind = "amazon"` channel file: validated, and built into a connector and an SQS consumer."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.channels import AmazonChannel
from config.loader import ConfigError, load_config
from connectors.amazon import AmazonConnector, OrderChangeConsumer, build_consumer
from connectors.registry import connector_for
from tests.support.daemon import DaemonConfig

pytestmark = pytest.mark.anyio
ENV = {
    "ADMIN_TOKEN_VAR": "admin-token-value",
    "LWA_SECRET": "lwa-secret-value-55",
    "AMZ_REFRESH": "Atzr|refresh-value-66",
    "SQS_SECRET": "sqs-secret-value-77",
}
BASE = (
    'kind = "amazon"\nseller_id = "A1SELLER"\nregion = "eu"\n'
    'marketplace_ids = ["A1F83G8C2ARO7P", "A1PA6795UKMFR9"]\n'
    'lwa_client_id = "amzn1.application-oa2-client.x"\nlwa_client_secret = "env:LWA_SECRET"\n'
    'refresh_token = "env:AMZ_REFRESH"\n'
)


def write(tmp_path: Path, body: str) -> Path:
    config = DaemonConfig(
        root=tmp_path, database_url=None, admin_token_env="ADMIN_TOKEN_VAR", channels={"amz": body}
    )
    return config.write()


async def test_a_channel_file_builds_the_connector_and_the_consumer(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        BASE
        + 'sqs_queue_url = "http://127.0.0.1:9010/123456789012/orders"\n'
        + 'sqs_endpoint_url = "http://127.0.0.1:9010"\n'
        + 'aws_access_key_id = "AKIATEST"\naws_secret_access_key = "env:SQS_SECRET"\n'
        + 'api_base_url = "http://127.0.0.1:9009"\n'
        + 'lwa_token_url = "http://127.0.0.1:9009/auth/o2/token"\n'
        + "stock_feed_threshold = 20\n"
        + 'carrier_codes = { "Speedy" = "Other", "ups ground" = "UPS" }\n',
    )
    channel = load_config(root, env=ENV).channels["amz"]
    assert isinstance(channel, AmazonChannel)
    for secret in ENV.values():
        assert secret not in repr(channel)
    factory = connector_for("amazon")
    assert factory is not None
    connector = factory(channel)
    try:
        assert isinstance(connector, AmazonConnector)
        settings = connector.settings
        assert settings.marketplace_ids == ("A1F83G8C2ARO7P", "A1PA6795UKMFR9")
        assert settings.api_base_url == "http://127.0.0.1:9009"
        assert settings.lwa_token_url == "http://127.0.0.1:9009/auth/o2/token"
        assert settings.feed_threshold == 20
        assert settings.carrier_codes == {"Speedy": "Other", "ups ground": "UPS"}
        assert connector.capabilities.supports_webhooks
        assert not connector.capabilities.supports_compare_and_swap
        assert connector.capabilities.max_stock_batch == 25_000
        for secret in ENV.values():
            assert secret not in repr(settings)
    finally:
        await connector.aclose()
    consumer = build_consumer(channel)
    assert isinstance(consumer, OrderChangeConsumer)
    assert consumer.settings.endpoint_url == "http://127.0.0.1:9010/"
    assert consumer.settings.secret_access_key == "sqs-secret-value-77"
    assert consumer.settings.region_name == "eu-west-1"  # the region's, the URL names none


async def test_without_a_queue_there_is_no_consumer(tmp_path: Path) -> None:
    channel = load_config(write(tmp_path, BASE), env=ENV).channels["amz"]
    assert isinstance(channel, AmazonChannel)
    assert build_consumer(channel) is None
    assert channel.stock_feed_threshold == 50 and channel.carrier_codes == {}


@pytest.mark.parametrize(
    ("lines", "key"),
    [
        ('aws_access_key_id = "AKIA"\n', "aws_secret_access_key"),
        ('aws_secret_access_key = "env:SQS_SECRET"\n', "aws_access_key_id"),
        ("stock_feed_threshold = 0\n", "stock_feed_threshold"),
        ("stock_feed_threshold = 25001\n", "stock_feed_threshold"),
        ('carrier_codes = { "x" = "" }\n', "carrier_codes"),
        ("unknown_key = 1\n", "unknown_key"),
    ],
)
def test_bad_amazon_settings_are_refused_by_name(tmp_path: Path, lines: str, key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, BASE + lines), env=ENV)
    assert key in str(raised.value)
