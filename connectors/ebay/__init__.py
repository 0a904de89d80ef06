"""eBay through the Sell REST APIs and the Trading API (`kind = "ebay"`).

auth.py renews OAuth tokens; client.py (REST) and trading.py (Trading XML through ebaysdk) call
eBay behind the daily quotas of quota.py; mapper.py and orders.py read orders; stock.py pushes
stock in both worlds (inventory.py, trading_xml.py); listings.py reads listings; webhooks.py
verifies notifications; connector.py wires them into the Connector protocol.

The daemon's part: webhook_handler.py (registered in connectors/registry.py) answers
`GET /webhooks/NAME?challenge_code=`, verifies `POST /webhooks/NAME` with the connector's key
cache (412 when refused, 503 when the key cannot be fetched now, 204 once stored under the
notificationId), and maps each stored notification to an action: erase a closed account's
personal data, or fetch the order a hint names; `connector.status().to_json()` goes into
/api/status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.ebay import const
from connectors.ebay.connector import EbayConnector, EbaySettings, EbayStatus, carrier_code
from connectors.ebay.mapper import buyer_ref, order_from_ebay
from connectors.ebay.webhooks import (
    AccountDeletion,
    Notification,
    NotificationVerificationError,
    account_deletion,
    challenge_response,
    order_hint,
)

if TYPE_CHECKING:
    from config.channels import EbayChannel


def build_connector(channel: EbayChannel) -> EbayConnector:
    """The connector for a validated `kind = "ebay"` channel file."""
    endpoint = channel.notification_endpoint_url
    return EbayConnector(
        channel.name,
        EbaySettings(
            client_id=channel.client_id,
            client_secret=channel.client_secret.reveal(),
            refresh_token=channel.refresh_token.reveal(),
            marketplace_id=channel.marketplace_id,
            verification_token=channel.verification_token.reveal(),
            notification_endpoint_url=str(endpoint) if endpoint else None,
            stock_api=channel.stock_api,
            api_base_url=str(channel.api_base_url or const.API_BASE_URL),
            trading_api_url=str(channel.trading_api_url or const.TRADING_URL),
            identity_url=str(channel.identity_url or const.IDENTITY_URL),
            daily_quotas={str(k): v for k, v in channel.daily_call_limits.items()},
        ),
    )


__all__ = [
    "AccountDeletion",
    "EbayConnector",
    "EbaySettings",
    "EbayStatus",
    "Notification",
    "NotificationVerificationError",
    "account_deletion",
    "build_connector",
    "buyer_ref",
    "carrier_code",
    "challenge_response",
    "order_from_ebay",
    "order_hint",
]
