"""What a channel kind that delivers notifications through a queue gives the daemon.

Some channels do not call us: they put notifications on a queue we read (Amazon's ORDER_CHANGE
goes only to an SQS queue). The daemon reads such a queue the way it receives a webhook: each
notice is persisted in the webhook inbox under the channel's own dedupe key and committed, and
only then acknowledged (deleted from the queue), so a crash in between brings the notice back and
the inbox dedupes it. The inbox worker later asks `map` what the stored notice wants, exactly as
for a webhook delivery (usually `FetchOrder`).

sync/ sees only this protocol; the concrete queues are built by connectors/registry.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from connectors.webhook_handler import WebhookAction


@dataclass(frozen=True)
class QueuedDelivery:
    """One notice read from the queue and not yet acknowledged.

    `body` is what the inbox keeps (the queue decides how much of the notice that is: never more
    buyer data than needed); `receipt` is the queue's own handle, opaque to the daemon.
    """

    delivery_id: str
    topic: str
    body: bytes
    receipt: object = None


@runtime_checkable
class NoticeQueue(Protocol):
    """One channel's notification queue: read, acknowledge after the commit, map stored notices."""

    channel: str

    async def open(self) -> None:
        """Connect to the queue (again, after `close`)."""

    async def close(self) -> None:
        """Release the connection; unacknowledged notices come back to a later reader."""

    def batches(self) -> AsyncIterator[Sequence[QueuedDelivery]]:
        """Long-poll forever, answering each non-empty batch; transient failures are retried
        inside; AuthError or PermanentError end the iteration."""

    async def acknowledge(self, deliveries: Sequence[QueuedDelivery]) -> None:
        """Remove these notices from the queue: call only after their commit."""

    def map(self, topic: str, body: bytes) -> WebhookAction:
        """What a stored notice asks of the daemon; MalformedDeliveryError if unreadable."""
