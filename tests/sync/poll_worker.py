"""A poller in its own process, to be SIGKILLed between a page's fetch and its commit.

`python -m tests.sync.poll_worker DB_URL CHANNEL_ID HALT_AT` polls the seeded marketplace of
`seeded_marketplace()` into the store; after the HALT_AT-th page is fetched, and before it is
committed, it prints `FETCHED <updated_since> <cursor or ->` and waits to be killed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta

from connectors.base import Capabilities, OrderPage
from connectors.memory import CLOCK_START, MemoryConnector, MemoryMarketplace
from sync.db import Database
from sync.ingest import ChannelRef
from sync.polling import PollChannel, poll_orders

ORDERS = 7
PAGE_SIZE = 2
SINCE = CLOCK_START - timedelta(days=1)


def seeded_marketplace() -> MemoryMarketplace:
    """The same marketplace in every process: 7 orders of A and B, at fixed times."""
    market = MemoryMarketplace()
    for n in range(ORDERS):
        market.place_order([("A" if n % 2 else "B", 1 + n % 3)])
    return market


def connector(market: MemoryMarketplace) -> MemoryConnector:
    """The reference connector to it, 2 orders a page."""
    return MemoryConnector(market, name="shop", capabilities=Capabilities(), page_size=PAGE_SIZE)


class HaltingConnector(MemoryConnector):
    """Stops for good after fetching page `halt_at`, before the caller can commit it."""

    def __init__(self, market: MemoryMarketplace, halt_at: int) -> None:
        super().__init__(market, name="shop", capabilities=Capabilities(), page_size=PAGE_SIZE)
        self.halt_at = halt_at
        self.fetched = 0

    async def fetch_orders(self, updated_since: datetime, cursor: str | None) -> OrderPage:
        page = await super().fetch_orders(updated_since, cursor)
        self.fetched += 1
        if self.fetched == self.halt_at:
            print(f"FETCHED {updated_since.isoformat()} {cursor or '-'}", flush=True)
            await asyncio.sleep(3600)
        return page


def main(argv: Sequence[str]) -> int:
    """Poll until killed at the halting page."""
    url, channel_id, halt_at = argv[0], int(argv[1]), int(argv[2])
    db = Database(url)
    channel = PollChannel(
        ChannelRef(channel_id, "shop"), HaltingConnector(seeded_marketplace(), halt_at)
    )
    try:
        asyncio.run(poll_orders(db, channel, initial_since=SINCE))
    finally:
        db.dispose()
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
