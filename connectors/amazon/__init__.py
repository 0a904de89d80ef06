"""Amazon through the Selling Partner API (`kind = "amazon"`).

sdk.py wires the python-amazon-sp-api package to the shared HTTP layer, client.py paces and
retries each operation, mapper.py (and mapper_v0.py) and payloads.py translate, feeds.py runs a
JSON_LISTINGS_FEED, notifications.py and sqs.py read ORDER_CHANGE from the seller's SQS queue,
confirmations.py checks that confirmed shipments show, connector.py wires them into the
Connector protocol.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from connectors.amazon.confirmations import UnseenShipment
from connectors.amazon.connector import AmazonConnector, AmazonSettings
from connectors.amazon.const import SQS_REGIONS
from connectors.amazon.notice_queue import AmazonNoticeQueue
from connectors.amazon.notifications import NotificationError, OrderChangeNotice, parse_order_change
from connectors.amazon.sqs import OrderChangeConsumer, QueuedNotice, SqsSettings

if TYPE_CHECKING:
    from config.channels import AmazonChannel


def build_connector(channel: AmazonChannel) -> AmazonConnector:
    """The connector for a validated `kind = "amazon"` channel file."""
    return AmazonConnector(
        channel.name,
        AmazonSettings(
            seller_id=channel.seller_id,
            region=channel.region,
            marketplace_ids=tuple(dict.fromkeys(channel.marketplace_ids)),
            client_id=channel.lwa_client_id,
            client_secret=channel.lwa_client_secret.reveal(),
            refresh_token=channel.refresh_token.reveal(),
            api_base_url=str(channel.api_base_url).rstrip("/") if channel.api_base_url else None,
            lwa_token_url=str(channel.lwa_token_url) if channel.lwa_token_url else None,
            feed_threshold=channel.stock_feed_threshold,
            carrier_codes=dict(channel.carrier_codes),
            has_notifications=channel.sqs_queue_url is not None,
            confirm_grace=timedelta(seconds=channel.shipment_visible_grace_s),
        ),
    )


def build_consumer(channel: AmazonChannel) -> OrderChangeConsumer | None:
    """The ORDER_CHANGE consumer of a channel file with `sqs_queue_url`; None without one."""
    if channel.sqs_queue_url is None:
        return None
    secret = channel.aws_secret_access_key
    return OrderChangeConsumer(
        SqsSettings(
            queue_url=channel.sqs_queue_url,
            region=SQS_REGIONS[channel.region],
            endpoint_url=str(channel.sqs_endpoint_url) if channel.sqs_endpoint_url else None,
            access_key_id=channel.aws_access_key_id,
            secret_access_key=secret.reveal() if secret is not None else None,
        ),
        channel=channel.name,
    )


def build_notice_queue(channel: AmazonChannel) -> AmazonNoticeQueue | None:
    """The daemon's notice queue of a channel file with `sqs_queue_url`; None without one."""
    consumer = build_consumer(channel)
    return AmazonNoticeQueue(consumer) if consumer is not None else None


__all__ = [
    "AmazonConnector",
    "AmazonNoticeQueue",
    "AmazonSettings",
    "NotificationError",
    "OrderChangeConsumer",
    "OrderChangeNotice",
    "QueuedNotice",
    "SqsSettings",
    "UnseenShipment",
    "build_connector",
    "build_consumer",
    "build_notice_queue",
    "parse_order_change",
]
