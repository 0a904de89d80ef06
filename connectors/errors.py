"""The errors every connector raises, grouped by what the caller should do next.

    ConnectorError                      root: something went wrong talking to a channel
     ├── RetryableError                 try again later (optional retry_after, in seconds)
     │    ├── RateLimitedError          the channel throttled us: wait at least retry_after
     │    └── UncertainOutcomeError     the request may have been applied (timeout, reset after
     │                                  sending): check before re-sending a non-idempotent write
     ├── AuthError                      credentials refused: stop calling this channel, alert
     ├── NotFoundError                  the thing asked for does not exist on the channel
     ├── SkipRecordError                this one record cannot be read; skip it, keep the rest
     └── PermanentError                 the channel refused for good (its reason kept): dead-letter

Messages never carry secrets or buyer data: they name the channel, the operation and the
channel's own error code or reason.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Root of the connector error tree."""

    def __init__(self, message: str, *, channel: str | None = None, operation: str | None = None):
        super().__init__(message)
        self.channel = channel
        self.operation = operation

    def __str__(self) -> str:
        where = ":".join(p for p in (self.channel, self.operation) if p)
        return f"{where}: {self.args[0]}" if where else str(self.args[0])


class RetryableError(ConnectorError):
    """A transient failure: the same call may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        channel: str | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message, channel=channel, operation=operation)
        self.retry_after = retry_after


class RateLimitedError(RetryableError):
    """The channel throttled the call; `retry_after` says how long to wait when the channel said."""


class UncertainOutcomeError(RetryableError):
    """The request was sent but no answer came back, so the channel may have applied it."""


class AuthError(ConnectorError):
    """The channel refused our credentials; retrying will not help until they are fixed."""


class NotFoundError(ConnectorError):
    """The order, listing or fulfilment asked for does not exist on the channel."""


class SkipRecordError(ConnectorError):
    """One record in a page cannot be mapped; the rest of the page is still good."""


class PermanentError(ConnectorError):
    """The channel refused the request for good; `reason` is the channel's own words."""

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        channel: str | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message, channel=channel, operation=operation)
        self.reason = reason or message


class BulkListRefusedError(PermanentError):
    """The channel refused its bulk list of changed orders (the seller's authorisation lacks
    the role it needs); callers read page by page instead. Not an AuthError: every other call
    of the channel still works."""
