"""What a channel kind that receives webhooks gives the daemon: verify a delivery, map it to an action.

The daemon's webhook route stays kind-agnostic: it asks the channel's handler to `verify` the
raw request (signature, headers) before anything is stored, persists the body under the delivery
id the handler names, answers the channel, and later asks the same handler to `map` the stored
body to one of the actions below, which sync/ carries out. Both methods are pure: no HTTP, no
store. A kind that needs to call its API to complete a delivery says so with `FetchOrder`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from connectors.base import Order


class WebhookRefusedError(ValueError):
    """A delivery refused before its body was read: answer 401 and store nothing. The message
    names the check that failed and never quotes the body or a secret."""


class MalformedDeliveryError(ValueError):
    """A verified delivery whose body cannot be read: it will never succeed, so give up on it.
    The message names what is wrong, never the content (it may hold buyer data)."""


@dataclass(frozen=True)
class VerifiedDelivery:
    """What a verified request is: the inbox key that dedupes it, and its topic."""

    delivery_id: str
    topic: str


@dataclass(frozen=True)
class IngestOrder:
    """The delivery carries the order's full state: ingest it."""

    order: Order


@dataclass(frozen=True)
class FetchOrder:
    """The delivery says an order changed without carrying it: read it from the channel."""

    external_id: str


@dataclass(frozen=True)
class ReconcileListing:
    """A listing's quantity changed on the channel: a hint to check what we believe it shows.

    `quantity` is what the channel said it shows then (None when it did not say); deliveries
    come late and out of order, so it is compared with our belief, never stored as the truth.
    """

    listing_ref: str
    quantity: int | None = None


@dataclass(frozen=True)
class RevokeChannel:
    """The seller removed our access (app uninstalled): the channel goes auth-failed."""

    reason: str


@dataclass(frozen=True)
class IgnoreDelivery:
    """A topic the daemon does not act on (kept in the inbox, marked processed)."""

    reason: str


WebhookAction = IngestOrder | FetchOrder | ReconcileListing | RevokeChannel | IgnoreDelivery


@runtime_checkable
class WebhookHandler(Protocol):
    """One channel's webhook verification and mapping; pure functions of the request."""

    def verify(self, headers: Mapping[str, str], body: bytes) -> VerifiedDelivery:
        """Check the request is the channel's; WebhookRefusedError naming what is wrong if not."""

    def map(self, topic: str, body: bytes) -> WebhookAction:
        """What a stored delivery asks of the daemon; MalformedDeliveryError if it is unreadable."""


@runtime_checkable
class SubscribesWebhooks(Protocol):
    """A connector that can make sure the channel's webhook subscriptions exist."""

    async def ensure_webhooks(self) -> list[str]:
        """Create the missing subscriptions; answer the topics created."""
