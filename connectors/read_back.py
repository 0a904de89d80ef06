"""Channels whose shipment confirmations may lag: what they accepted and still do not show.

Amazon answers confirmShipment with 204 before (and sometimes without) the buyer seeing the
parcel (CHANNELS.md). A connector for such a channel remembers its confirmations, re-reads the
orders once a grace period has passed, and reports those still unseen; the daemon calls
`read_back_shipments` on a timer and shows `unseen_shipments` in the channel's status.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable


class UnseenShipmentView(Protocol):
    """A confirmed shipment the channel's order did not show past the grace period."""

    @property
    def order_id(self) -> str:
        """The channel's order id."""

    @property
    def package_reference(self) -> str:
        """The reference the shipment was confirmed under."""

    @property
    def confirmed_at(self) -> datetime:
        """When the channel accepted the confirmation."""


@runtime_checkable
class ConfirmationsMayLag(Protocol):
    """A connector whose channel may accept a shipment it does not show."""

    async def read_back_shipments(self) -> Sequence[UnseenShipmentView]:
        """Re-read the orders whose confirmations are due a check (none: no call); answer the
        shipments still unseen. Connector errors propagate; the next call tries again."""

    def unseen_shipments(self) -> Sequence[UnseenShipmentView]:
        """The shipments unseen at the last read, without calling the channel."""
