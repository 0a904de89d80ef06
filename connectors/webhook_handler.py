"""What a channel kind that receives webhooks gives the daemon: verify a delivery, map it to an action.

The daemon's webhook route stays kind-agnostic: it asks the channel's handler to `verify` the
raw request (signature, headers) before anything is stored, persists the body under the delivery
id the handler names, answers the channel, and later asks the same handler to `map` the stored
body to one of the actions below, which sync/ carries out. Both methods are pure: no HTTP, no
store. A kind that needs to call its API to complete a delivery says so with `FetchOrder`.
A kind may also fetch what `verify` needs beforehand (`PreparesVerification`: eBay's signing
key), answer a `GET` endpoint check (`AnswersEndpointCheck`) and expect other statuses than
200/401 (`answers`, an `EndpointAnswers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
class EraseBuyer:
    """A buyer closed their account (eBay's account deletion): erase the personal data of their
    orders on this channel, keep the order facts. `buyer_refs` are the stand-ins the orders hold
    for that buyer (never the identity itself)."""

    buyer_refs: tuple[str, ...] = field(repr=False)


@dataclass(frozen=True)
class IgnoreDelivery:
    """A topic the daemon does not act on (kept in the inbox, marked processed)."""

    reason: str


WebhookAction = (
    IngestOrder | FetchOrder | ReconcileListing | RevokeChannel | EraseBuyer | IgnoreDelivery
)


@dataclass(frozen=True)
class EndpointAnswers:
    """The HTTP statuses a channel expects for a stored (or repeated) delivery and a refused one."""

    accepted: int = 200
    refused: int = 401


def answers_of(handler: object) -> EndpointAnswers:
    """The handler's `answers` if it declares them (eBay: 204/412), else Shopify's 200/401."""
    answers = getattr(handler, "answers", None)
    return answers if isinstance(answers, EndpointAnswers) else EndpointAnswers()


@runtime_checkable
class WebhookHandler(Protocol):
    """One channel's webhook verification and mapping; pure functions of the request."""

    def verify(self, headers: Mapping[str, str], body: bytes) -> VerifiedDelivery:
        """Check the request is the channel's; WebhookRefusedError naming what is wrong if not."""

    def map(self, topic: str, body: bytes) -> WebhookAction:
        """What a stored delivery asks of the daemon; MalformedDeliveryError if it is unreadable."""


@runtime_checkable
class PreparesVerification(Protocol):
    """A handler whose `verify` needs something fetched first (eBay: the signing key by kid)."""

    async def prepare(self, headers: Mapping[str, str], body: bytes) -> None:
        """Fetch what `verify` will need; WebhookRefusedError when the request cannot be the
        channel's, a connector RetryableError when the channel cannot be asked now."""


class EndpointCheckError(ValueError):
    """The channel's endpoint check cannot be answered (a setting is missing): answer 503."""


@runtime_checkable
class AnswersEndpointCheck(Protocol):
    """A handler that answers the channel's `GET` endpoint check (eBay's challenge_code)."""

    def answer_check(self, query: Mapping[str, str]) -> Mapping[str, str] | None:
        """The JSON body answering the check in `query`; None when the query holds no check."""


@runtime_checkable
class SubscribesWebhooks(Protocol):
    """A connector that can make sure the channel's webhook subscriptions exist."""

    async def ensure_webhooks(self) -> list[str]:
        """Create the missing subscriptions; answer the topics created."""
