"""Shipments a channel accepted but does not show: read them back on a timer, and report them.

For channels whose connector says confirmations may lag (connectors/read_back.py: Amazon answers
confirmShipment with 204 before, and sometimes without, the buyer seeing it), this worker asks
each connector every few seconds to re-read the orders whose confirmations are due a check (the
connector makes no call when none is due). A shipment still unseen after the connector's grace
period is logged once by the connector, listed under the channel in `/api/status`
(`unseen_shipments`) and counted in `channel_sync_unseen_shipments`; it clears when the channel
shows it.

Kept in memory, per instance: the instance that confirmed a shipment is the one that checks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connectors.errors import AuthError, ConnectorError
from connectors.read_back import ConfirmationsMayLag, UnseenShipmentView

log = logging.getLogger(__name__)

CHECK_EVERY_S = 5.0  # cheap: a connector calls its channel only when a check is due


def lagging_channels(connectors: Mapping[str, object]) -> dict[str, ConfirmationsMayLag]:
    """The connectors whose confirmations may lag, by channel name."""
    return {
        name: connector
        for name, connector in connectors.items()
        if isinstance(connector, ConfirmationsMayLag)
    }


def unseen_json(shipment: UnseenShipmentView) -> dict[str, Any]:
    """An unseen shipment as the admin API shows it."""
    return {
        "order_id": shipment.order_id,
        "package_reference": shipment.package_reference,
        "confirmed_at": shipment.confirmed_at.isoformat(),
    }


class ShipmentReadBack:
    """Asks each lagging channel's connector to read its confirmations back, until stopped."""

    name = "shipment-read-back"

    def __init__(
        self,
        channels: Mapping[str, ConfirmationsMayLag],
        *,
        is_callable: Callable[[str], bool] = lambda _name: True,
        on_auth_error: Callable[[str, str], None] = lambda _name, _error: None,
        every_s: float = CHECK_EVERY_S,
    ) -> None:
        self.channels = dict(channels)
        self.is_callable = is_callable
        self.on_auth_error = on_auth_error
        self.every_s = every_s
        self._failing: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Check every `every_s` until `stop` is set."""
        while not stop.is_set():
            await self.check_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.every_s)

    async def check_once(self) -> None:
        """One round over every channel that may be called."""
        for name, connector in self.channels.items():
            if not self.is_callable(name):
                continue
            try:
                await connector.read_back_shipments()
            except AuthError as err:
                self.on_auth_error(name, str(err))
            except ConnectorError as err:
                if name not in self._failing:
                    log.warning("channel %s: reading shipments back failed: %s", name, err)
                self._failing.add(name)
                continue
            except Exception:
                # The supervisor of this check: a bug in one channel must not stop the others.
                log.exception("channel %s: reading shipments back failed", name)
                continue
            if name in self._failing:
                self._failing.discard(name)
                log.info("channel %s: reading shipments back works again", name)

    def notes(self) -> dict[str, dict[str, Any]]:
        """Per channel, for `/api/status`: the shipments it accepted and does not show."""
        return {
            name: {"unseen_shipments": [unseen_json(s) for s in connector.unseen_shipments()]}
            for name, connector in self.channels.items()
        }


class UnseenShipmentsCollector(Collector):
    """`channel_sync_unseen_shipments{channel}`, read from the connectors at scrape time."""

    def __init__(self, channels: Mapping[str, ConfirmationsMayLag]) -> None:
        self._channels = dict(channels)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "channel_sync_unseen_shipments",
            "Shipments the channel accepted that its orders still do not show past the grace "
            "period, by channel.",
            labels=["channel"],
        )
        for name, connector in self._channels.items():
            gauge.add_metric([name], len(connector.unseen_shipments()))
        yield gauge
