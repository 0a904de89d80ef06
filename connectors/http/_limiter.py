"""Client-side token buckets, one per channel account and operation, so we never exceed a channel's rate."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping

# Float slack when comparing tokens and times, so a waiter woken exactly on time is not sent back
# to sleep for a rounding error (which a fake clock would never get past).
_EPSILON = 1e-9


# How often a background request looks again while a foreground one waits for its tokens.
_BACKGROUND_POLL_S = 0.05


def _check_positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


class TokenBucket:
    """An async token bucket: `rate` tokens a second, at most `burst` saved up, FIFO among waiters."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        _check_positive("rate", rate)
        _check_positive("burst", burst)
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst  # a fresh bucket starts full, as the channels' own buckets do
        self._updated_at = clock()
        self._blocked_until = -math.inf
        # The head waiter sleeps while holding the lock; asyncio.Lock queues the rest in arrival
        # order, so a small request cannot overtake a large one that is waiting for tokens.
        self._lock = asyncio.Lock()
        self._background = asyncio.Lock()  # see acquire(reserve=...)
        # Set by update(): the channel's live figures may let the head waiter go at once (Shopify
        # reports its bucket in every answer; a waiter must not sleep out a stale estimate).
        self._changed = asyncio.Event()

    @property
    def rate(self) -> float:
        """Tokens restored per second."""
        return self._rate

    @property
    def burst(self) -> float:
        """Most tokens the bucket holds."""
        return self._burst

    @property
    def available(self) -> float:
        """Tokens that could be taken right now (0 while a penalty runs)."""
        now = self._clock()
        self._refill(now)
        return 0.0 if now < self._blocked_until else self._tokens

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated_at)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._updated_at = max(self._updated_at, now)

    def _time_until(self, tokens: float, now: float) -> float:
        blocked = self._blocked_until - now
        missing = tokens - self._tokens
        return max(blocked, missing / self._rate, 0.0)

    async def acquire(self, tokens: float = 1.0, *, reserve: float = 0.0) -> float:
        """Wait until `tokens` are available and take them; answer how many seconds that took.

        With a `reserve` the request is background work (a reconcile's page of listings): it
        takes its tokens only while no other request waits and only if `reserve` tokens stay
        in the bucket after it (or as many as its size leaves room for), so a request that comes
        meanwhile (a stock push) goes at once instead of queueing behind it.
        """
        _check_positive("tokens", tokens)
        if tokens > self._burst:
            raise ValueError(f"cannot take {tokens} tokens from a bucket of {self._burst}")
        if reserve > 0:
            return await self._acquire_background(tokens, reserve)
        started = self._clock()
        async with self._lock:
            while True:
                if tokens > self._burst:  # update() shrank the bucket while we waited
                    raise ValueError(f"cannot take {tokens} tokens from a bucket of {self._burst}")
                self._changed.clear()  # before reading the figures: an update after wakes us
                now = self._clock()
                self._refill(now)
                wait = self._time_until(tokens, now)
                if wait <= _EPSILON:
                    self._tokens = max(0.0, self._tokens - tokens)
                    return self._clock() - started
                # Re-checked after waking: penalize() or update() may have moved the goal.
                await self._wait(wait)

    async def _acquire_background(self, tokens: float, reserve: float) -> float:
        started = self._clock()
        async with self._background:  # background requests among themselves, in order
            while True:
                if tokens > self._burst:  # update() shrank the bucket while we waited
                    raise ValueError(f"cannot take {tokens} tokens from a bucket of {self._burst}")
                self._changed.clear()
                now = self._clock()
                self._refill(now)
                wait = self._time_until(tokens + min(reserve, self._burst - tokens), now)
                if wait <= _EPSILON and not self._lock.locked():
                    self._tokens = max(0.0, self._tokens - tokens)
                    return self._clock() - started
                # A request in the foreground is waiting for its tokens: look again shortly.
                await self._wait(wait if wait > _EPSILON else _BACKGROUND_POLL_S)

    async def _wait(self, seconds: float) -> None:
        """Sleep `seconds`, or less if update() brings new figures meanwhile."""
        sleeping = asyncio.ensure_future(self._sleep(seconds))
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({sleeping, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (sleeping, changed):
                waiter.cancel()

    def penalize(self, seconds: float) -> None:
        """The channel throttled us: grant no token for `seconds`, and start refilling from empty."""
        now = self._clock()
        self._refill(now)
        # The channel's bucket is empty even if ours was not: trust theirs. Refilling still runs
        # during the penalty, as the channel's own bucket restores while we wait.
        self._tokens = 0.0
        self._blocked_until = max(self._blocked_until, now + max(0.0, seconds))

    def update(
        self,
        rate: float | None = None,
        burst: float | None = None,
        available: float | None = None,
    ) -> None:
        """Take the channel's live figures (Shopify's throttleStatus) in place of our own estimate."""
        if rate is not None:
            _check_positive("rate", rate)
        if burst is not None:
            _check_positive("burst", burst)
        if available is not None and not math.isfinite(available):
            raise ValueError(f"available must be finite, got {available!r}")
        # Settle what the old rate earned up to now before the new figures apply.
        self._refill(self._clock())
        if rate is not None:
            self._rate = rate
        if burst is not None:
            self._burst = burst
        if available is not None:
            self._tokens = available
        self._tokens = min(max(self._tokens, 0.0), self._burst)
        self._changed.set()


class RateLimiters:
    """One TokenBucket per (channel, operation), created on first use from a table of limits."""

    def __init__(
        self,
        limits: Mapping[str, tuple[float, float]],
        *,
        default: tuple[float, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        for operation, (rate, burst) in limits.items():
            _check_positive(f"{operation} rate", rate)
            _check_positive(f"{operation} burst", burst)
        if default is not None:
            _check_positive("default rate", default[0])
            _check_positive("default burst", default[1])
        self._limits = dict(limits)
        self._default = default
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def bucket(self, channel: str, operation: str) -> TokenBucket:
        """The bucket for this channel account and operation; the same one on every call."""
        key = (channel, operation)
        found = self._buckets.get(key)
        if found is None:
            limit = self._limits.get(operation, self._default)
            if limit is None:
                # No silent default: pacing an unknown operation at a guessed rate could exceed
                # the channel's real one (Amazon's searchOrders allows one call every 3 minutes).
                raise KeyError(f"{channel}: no rate limit for operation {operation!r}")
            rate, burst = limit
            found = TokenBucket(rate, burst, clock=self._clock, sleep=self._sleep)
            self._buckets[key] = found
        return found
