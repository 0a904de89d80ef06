"""The reference marketplace over HTTP (`kind = "reference"`): a test and demo channel.

It speaks to the loopback sandbox in sandbox/reference/ (and shares no code with it), so the
daemon can run as a real process against channels that outlive it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.base import Capabilities
from connectors.reference.connector import ReferenceConnector, ReferenceSettings

if TYPE_CHECKING:
    from config.channels import ReferenceChannel


def build_connector(channel: ReferenceChannel) -> ReferenceConnector:
    """The connector for a validated `kind = "reference"` channel file."""
    return ReferenceConnector(
        channel.name,
        ReferenceSettings(
            base_url=str(channel.base_url),
            token=channel.token.reveal(),
            capabilities=Capabilities(
                max_stock_batch=channel.max_stock_batch,
                max_in_flight=channel.max_in_flight,
                supports_compare_and_swap=channel.compare_and_swap,
                supports_webhooks=False,
                idempotent_fulfillment=channel.idempotent_fulfillment,
            ),
            timeout_s=channel.timeout_s,
            page_size=channel.page_size,
        ),
    )


__all__ = ["ReferenceConnector", "ReferenceSettings", "build_connector"]
