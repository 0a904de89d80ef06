"""Slow down token guessing on the admin API: per client address, after `max_failures` bad tokens
within `window_s`, every token-checked request from that address is answered 429 until the lock
lapses, without looking at its token.

Failures are counted per address (an IPv6 address by its /64, which one host usually owns whole)
and expire with time only: a success does not clear them, because on loopback every local client
shares 127.0.0.1 and an operator's good request must not wipe a guesser's count. The book holds at
most `max_addresses` addresses, least recently seen evicted first, so a flood of addresses costs
bounded memory (an evicted address only gets a fresh count: no more guesses than a new address).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_FAILURES = 10
WINDOW_S = 60.0
MAX_ADDRESSES = 4096


@dataclass
class _Book:
    """One address: when its recent failures happened, and until when it is locked out."""

    failures: deque[float] = field(default_factory=deque)
    locked_until: float | None = None


def client_key(host: str | None) -> str:
    """The key an address is counted under: the IP itself, an IPv6 address's /64."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class BadTokenLimiter:
    """Counts bad admin tokens per client address and says which addresses are locked out."""

    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window_s <= 0 or max_addresses < 1:
            raise ValueError("max_failures, window_s and max_addresses must be positive")
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._books: OrderedDict[str, _Book] = OrderedDict()

    def __len__(self) -> int:
        return len(self._books)

    def retry_after(self, key: str) -> float | None:
        """Seconds until `key` may try again, or None when it is not locked out."""
        book = self._books.get(key)
        if book is None or book.locked_until is None:
            return None
        remaining = book.locked_until - self._clock()
        if remaining > 0:
            self._books.move_to_end(key)
            return remaining
        del self._books[key]  # the lock lapsed: a clean slate
        return None

    def record_failure(self, key: str) -> bool:
        """Count one bad token from `key`; the `max_failures`-th within the window locks it
        (answered True: this failure locked the address out)."""
        now = self._clock()
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = _Book()
            while len(self._books) > self.max_addresses:
                self._books.popitem(last=False)
        else:
            self._books.move_to_end(key)
        while book.failures and book.failures[0] <= now - self.window_s:
            book.failures.popleft()
        book.failures.append(now)
        if len(book.failures) >= self.max_failures:
            book.failures.clear()
            book.locked_until = now + self.window_s
            log.warning(
                "admin: %d bad tokens within %gs from %s; answering it 429 for %gs",
                self.max_failures,
                self.window_s,
                key,
                self.window_s,
            )
            return True
        return False


def retry_after_header(seconds: float) -> str:
    """A Retry-After value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
