"""The retry policy: which connector errors to retry, and how long to wait between tries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from connectors.errors import RetryableError, UncertainOutcomeError

log = logging.getLogger("connectors.http")


class RetryAfterOrBackoff(wait_base):
    """Full-jitter exponential backoff, but never shorter than the error's `retry_after`."""

    def __init__(self, *, base: float, cap: float) -> None:
        self._backoff = wait_random_exponential(multiplier=base, max=cap)

    def __call__(self, retry_state: RetryCallState) -> float:
        """Seconds to wait before the next attempt."""
        backoff: float = self._backoff(retry_state)
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed:
            error = outcome.exception()
            if isinstance(error, RetryableError) and error.retry_after is not None:
                return max(backoff, error.retry_after)
        return backoff


def _should_retry(retry_uncertain: bool) -> Callable[[BaseException], bool]:
    def should_retry(error: BaseException) -> bool:
        if isinstance(error, UncertainOutcomeError):
            # The first request may have been applied: sending it again is only safe when the
            # call is idempotent (a read, or a write carrying an idempotency key).
            return retry_uncertain
        return isinstance(error, RetryableError)

    return should_retry


def _log_retry(retry_state: RetryCallState) -> None:
    error = retry_state.outcome.exception() if retry_state.outcome else None
    wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
    log.debug("attempt %d failed (%s); retrying in %.2fs", retry_state.attempt_number, error, wait)


def retry_policy(
    *,
    attempts: int = 5,
    base: float = 0.5,
    cap: float = 30.0,
    retry_uncertain: bool = False,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncRetrying:
    """A fresh AsyncRetrying for one call: retries RetryableError, re-raises the last error."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    # AsyncRetrying keeps its attempt state on the instance (per thread, not per task), so each
    # call gets its own; sharing one between concurrent calls would mix their counters.
    return AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=RetryAfterOrBackoff(base=base, cap=cap),
        retry=retry_if_exception(_should_retry(retry_uncertain)),
        before_sleep=_log_retry,
        reraise=True,
        sleep=sleep,
    )
