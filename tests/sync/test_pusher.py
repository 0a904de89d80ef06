"""The stock pusher's pacing: when a batching channel's batch goes, and what a push records."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from connectors.base import Capabilities, Order, StockPushResult, StockTarget
from connectors.memory import MemoryConnector, MemoryMarketplace
from sync.db import Database
from sync.models import JobKind, JobState, Listing, OutboxJob
from sync.outbox import claim
from sync.push_policy import Arrivals, Coalescing
from sync.pusher import PushChannel, StockPusher
from sync.stock_ops import set_stock
from sync.stock_push import plan_targets, prepare_batch, record_results
from tests.sync.engine_harness import (
    IDLE_TIMEOUT_S,
    ChannelSpec,
    Store,
    StoreSpec,
    build_store,
    expected_channel_quantities,
    push_until_idle,
    start_in_sync,
)

BATCH_4 = Capabilities(max_stock_batch=4, max_in_flight=2)
CAS = Capabilities(max_stock_batch=250, max_in_flight=2, supports_compare_and_swap=True)
PLAIN = Capabilities(max_stock_batch=1, max_in_flight=1)
# A linger no test waits out: a push that comes sooner was not held by it.
LONG_S = 60.0


class LandingConnector(MemoryConnector):
    """A reference connector that notes each call: when it landed and which listings it set."""

    def __init__(self, market: MemoryMarketplace, spec: ChannelSpec) -> None:
        super().__init__(market, name=spec.name, capabilities=spec.capabilities)
        self.landed: list[tuple[float, list[str]]] = []

    async def push_stock(self, targets: Sequence[StockTarget]) -> Sequence[StockPushResult]:
        """Push, then note the call."""
        results = await super().push_stock(targets)
        self.landed.append((time.monotonic(), [t.listing_ref for t in targets]))
        return results


def _store(database: Database, spec: ChannelSpec, skus: Sequence[str]) -> Store:
    """Channels in sync with the ledger (10 of each SKU), a LandingConnector on `spec`."""
    other = ChannelSpec("other", PLAIN)
    store = build_store(
        database,
        StoreSpec(channels=[spec, other], skus=skus, on_hand={(s, "default"): 10 for s in skus}),
    )
    start_in_sync(store)
    channel = store.channels[spec.name]
    channel.connector = LandingConnector(channel.market, spec)
    return store


def _pusher(store: Store, name: str, coalescing: Coalescing | None) -> StockPusher:
    channel = store.channels[name]
    return StockPusher(
        store.db, [PushChannel(name, channel.connector, channel.plan, coalescing)], idle_s=0.05
    )


def _landing(store: Store, name: str) -> LandingConnector:
    connector = store.channels[name].connector
    assert isinstance(connector, LandingConnector)
    return connector


def _set(store: Store, sku: str, on_hand: int) -> None:
    store.db.transact(lambda session: set_stock(session, sku, "default", on_hand))


@contextlib.asynccontextmanager
async def _running(pusher: StockPusher) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(pusher.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, IDLE_TIMEOUT_S)


async def _until(condition: Callable[[], bool], within_s: float) -> float:
    """Poll until `condition` holds; answer the seconds it took, fail after `within_s`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within_s:
            raise AssertionError(f"not within {within_s} s")
        await asyncio.sleep(0.002)
    return time.monotonic() - started


def _channel_matches_ledger(store: Store, name: str) -> None:
    with store.db.read_session() as session:
        wanted = expected_channel_quantities(session, store)[name]
    market = store.channels[name].market
    assert {ref: market.stock_of(ref) for ref in wanted} == wanted


# --- the policy on its own: times are given, nothing waits -----------------------------------


def _noted(policy: Coalescing, *times: float) -> Arrivals:
    """Each time a commit changed the store and planning gave the channel work."""
    arrivals = Arrivals()
    for at in times:
        arrivals.active(at, policy)
        arrivals.note(at)
    return arrivals


def test_a_lone_change_may_go_after_the_quiet_time() -> None:
    policy = Coalescing(quiet_s=0.05, stream_gap_s=0.5, max_linger_s=LONG_S)
    assert _noted(policy, 100.0).partial_at(policy) == pytest.approx(100.05)


def test_a_change_soon_after_another_is_not_yet_a_stream() -> None:
    """Two changes 0.2 s apart (a sale just after a restock): no reason to wait longer."""
    policy = Coalescing(quiet_s=0.05, stream_gap_s=0.5, max_linger_s=LONG_S)
    assert _noted(policy, 100.0, 100.2).partial_at(policy) == pytest.approx(100.25)


def test_a_steady_stream_waits_for_a_pause_of_about_twice_its_gap() -> None:
    policy = Coalescing(quiet_s=0.05, stream_gap_s=0.5, max_linger_s=LONG_S)
    stream = _noted(policy, *(100.0 + tick * 0.1 for tick in range(11)))
    assert 101.0 + 0.2 <= stream.partial_at(policy) <= 101.0 + 0.25
    stream.active(102.0, policy)  # after a longer silence: a lone change again
    stream.note(102.0)
    assert stream.partial_at(policy) == pytest.approx(102.05)


def test_a_stream_never_waits_for_a_pause_longer_than_the_stream_gap() -> None:
    policy = Coalescing(quiet_s=0.05, stream_gap_s=0.5, max_linger_s=LONG_S)
    stream = _noted(policy, 100.0, 100.4, 100.8, 101.2)
    assert stream.partial_at(policy) == pytest.approx(101.2 + 0.5)


def test_the_irregular_commits_of_a_busy_machine_are_still_one_stream() -> None:
    """Gaps of 0.3 s and 0.05 s in turn: a short gap last must not make the next 0.3 s
    silence look like the end of the stream (twice the last gap would be 0.1 s)."""
    policy = Coalescing(quiet_s=0.05, stream_gap_s=1.0, max_linger_s=LONG_S)
    times, at = [100.0], 100.0
    for gap in [0.3, 0.05] * 6:
        at += gap
        times.append(at)
    stream = _noted(policy, *times)
    assert stream.partial_at(policy) > times[-1] + 0.3


def test_slow_planning_rounds_do_not_end_a_stream_of_commits() -> None:
    """Commits every 0.1 s while planning, busy, gives the channel work only every 1.5 s: the
    stream is read from the commits, so a partial batch keeps waiting for the pause."""
    policy = Coalescing(quiet_s=0.05, stream_gap_s=0.5, max_linger_s=LONG_S)
    arrivals = Arrivals()
    for tick in range(31):
        at = 100.0 + tick * 0.1
        arrivals.active(at, policy)
        if tick % 15 == 0:
            arrivals.note(at)
    assert arrivals.partial_at(policy) >= 103.0 + 0.2


def test_a_stream_that_never_pauses_is_sent_after_the_max_linger() -> None:
    policy = Coalescing(quiet_s=0.05, stream_gap_s=0.5, max_linger_s=1.0)
    stream = _noted(policy, *(100.0 + tick * 0.1 for tick in range(30)))
    assert stream.partial_at(policy) == pytest.approx(101.0)


def test_a_channel_of_single_listing_calls_never_lingers() -> None:
    policy = Coalescing.for_capabilities(Capabilities(max_stock_batch=1, max_in_flight=5))
    stream = _noted(policy, 100.0, 100.01, 100.02, 100.03)
    assert stream.partial_at(policy) <= 100.03


# --- the pusher -------------------------------------------------------------------------------


def test_a_lone_change_on_a_batching_channel_is_pushed_without_waiting_out_the_linger(
    database: Database,
) -> None:
    """One sale on a quiet channel: a partial batch of one listing, pushed at once."""
    store = _store(database, ChannelSpec("shop", BATCH_4), ["S", "T"])
    shop = _landing(store, "shop")
    pusher = _pusher(store, "shop", Coalescing(max_linger_s=LONG_S))

    async def scenario() -> float:
        async with _running(pusher):
            await asyncio.wait_for(pusher.wait_idle(), IDLE_TIMEOUT_S)
            _set(store, "S", 7)
            pusher.wake()
            return await _until(lambda: bool(shop.landed), within_s=LONG_S / 4)

    took = asyncio.run(scenario())
    assert took < 2.0, f"a lone change waited {took:.2f} s"
    assert shop.landed[0][1] == ["S"]
    _channel_matches_ledger(store, "shop")


def test_a_stream_of_changes_is_coalesced_into_few_calls(database: Database) -> None:
    """Twenty listings change one after another, each in its own transaction: the partial
    batch waits for the stream to pause, then goes as one call, not one call per change."""
    skus = [f"S{i:02d}" for i in range(20)]
    store = _store(database, ChannelSpec("shop", CAS), skus)
    shop = _landing(store, "shop")
    policy = Coalescing(quiet_s=0.5, stream_gap_s=1.0, max_linger_s=LONG_S)
    pusher = _pusher(store, "shop", policy)

    async def scenario() -> None:
        async with _running(pusher):
            await asyncio.wait_for(pusher.wait_idle(), IDLE_TIMEOUT_S)
            for n, sku in enumerate(skus):
                # Never down to the last 3 units: those go at once, whatever the policy.
                await asyncio.to_thread(_set, store, sku, 4 + n)
                pusher.wake()
            await asyncio.wait_for(pusher.wait_idle(), IDLE_TIMEOUT_S)

    asyncio.run(scenario())
    calls = [refs for _at, refs in shop.landed]
    assert len(calls) <= 2, f"{len(calls)} calls for 20 changes: {calls}"
    _channel_matches_ledger(store, "shop")


def _first_push_after(store: Store, on_hand: Mapping[str, int]) -> float:
    """Seconds from one stock change (these SKUs set to these figures) to the first push that
    lands on "shop", whose pusher would hold a partial batch for LONG_S."""
    shop = _landing(store, "shop")
    pusher = _pusher(store, "shop", Coalescing(quiet_s=LONG_S, max_linger_s=LONG_S))

    def write(session: Session) -> None:
        for sku, figure in on_hand.items():
            set_stock(session, sku, "default", figure)

    async def scenario() -> float:
        async with _running(pusher):
            await asyncio.wait_for(pusher.wait_idle(), IDLE_TIMEOUT_S)
            await asyncio.to_thread(store.db.transact, write)
            pusher.wake()
            return await _until(lambda: bool(shop.landed), within_s=LONG_S / 4)

    return asyncio.run(scenario())


def test_a_full_batch_is_not_held_back(database: Database) -> None:
    """Four listings change at once on a channel taking four per call: the batch is full and
    goes without waiting for the stream to pause or the linger to end."""
    skus = ["A", "B", "C", "D"]
    store = _store(database, ChannelSpec("shop", BATCH_4), skus)
    shop = _landing(store, "shop")
    took = _first_push_after(store, dict.fromkeys(skus, 5))
    assert took < 5.0, f"a full batch waited {took:.2f} s"
    assert sorted(shop.landed[0][1]) == skus
    _channel_matches_ledger(store, "shop")


def test_a_push_to_the_last_units_does_not_wait_for_company(database: Database) -> None:
    """S drops to its last 2 units while T drops to 7, on a channel that would hold a partial
    batch for a minute: the batch goes at once, S in it, and T rides along."""
    store = _store(database, ChannelSpec("shop", CAS), ["S", "T"])
    shop = _landing(store, "shop")
    took = _first_push_after(store, {"S": 2, "T": 7})
    assert took < 5.0, f"the last units waited {took:.2f} s"
    assert sorted(shop.landed[0][1]) == ["S", "T"]
    _channel_matches_ledger(store, "shop")


def _sold_here(store: Store, sku: str) -> None:
    """The channel's own sale, as ingest leaves it: a belief to confirm, nothing to change."""
    store.db.transact(
        lambda session: session.execute(
            Listing.__table__.update()
            .where(Listing.sku == sku)
            .values(is_dirty=True, verify_belief=True)
        )
    )


def _confirming(
    database: Database, skus: Sequence[str], *, hold_s: float
) -> tuple[Store, LandingConnector, StockPusher]:
    """A batching channel whose confirmations alone wait `hold_s`."""
    store = _store(database, ChannelSpec("shop", CAS), skus)
    return store, _landing(store, "shop"), _pusher(store, "shop", Coalescing(confirm_hold_s=hold_s))


async def _sold_here_once_idle(store: Store, pusher: StockPusher, *skus: str) -> None:
    """Once the pusher is idle, the channel's own sale of each SKU, one commit each."""
    await asyncio.wait_for(pusher.wait_idle(), IDLE_TIMEOUT_S)
    for sku in skus:
        await asyncio.to_thread(_sold_here, store, sku)
        pusher.wake()


def _pending(store: Store) -> int:
    with store.db.read_session() as session:
        jobs = session.scalars(select(OutboxJob).where(OutboxJob.state == JobState.PENDING))
        return len(jobs.all())


def test_a_confirmation_alone_waits_for_a_change_and_rides_in_its_call(
    database: Database,
) -> None:
    """The channel's own sale of S only confirms what it shows: no call of its own. The next
    change (T, elsewhere) goes at once, as a lone change does, and S rides in its call."""
    store, shop, pusher = _confirming(database, ["S", "T"], hold_s=LONG_S)

    async def scenario() -> None:
        async with _running(pusher):
            await _sold_here_once_idle(store, pusher, "S")
            await _until(lambda: _pending(store) == 1, within_s=LONG_S / 4)
            # No event marks a call not made: a lone change would have gone after quiet_s.
            await asyncio.sleep(10 * Coalescing().quiet_s)
            assert shop.landed == []
            await asyncio.to_thread(_set, store, "T", 7)
            pusher.wake()
            await _until(lambda: bool(shop.landed), within_s=LONG_S / 4)

    asyncio.run(scenario())
    assert [sorted(refs) for _at, refs in shop.landed] == [["S", "T"]]
    _channel_matches_ledger(store, "shop")


def test_confirmations_alone_go_together_once_the_oldest_has_waited_the_hold(
    database: Database,
) -> None:
    hold_s = 0.5
    store, shop, pusher = _confirming(database, ["S", "T"], hold_s=hold_s)

    async def scenario() -> float:
        async with _running(pusher):
            started = time.monotonic()
            await _sold_here_once_idle(store, pusher, "S", "T")
            await _until(lambda: bool(shop.landed), within_s=LONG_S / 4)
            return shop.landed[0][0] - started

    took = asyncio.run(scenario())
    assert took >= hold_s * 0.9, f"a confirmation went after {took:.2f} s, not held"
    assert [sorted(refs) for _at, refs in shop.landed] == [["S", "T"]]


def test_waiting_for_idle_sends_the_confirmations_held(database: Database) -> None:
    store, shop, pusher = _confirming(database, ["S"], hold_s=LONG_S)

    async def scenario() -> None:
        async with _running(pusher):
            await _sold_here_once_idle(store, pusher, "S")
            await asyncio.wait_for(pusher.wait_idle(), IDLE_TIMEOUT_S)

    asyncio.run(scenario())
    assert [refs for _at, refs in shop.landed] == [["S"]]


def test_single_listing_calls_fill_every_in_flight_slot(database: Database) -> None:
    """A channel taking one listing per call and five calls at a time gets five at a time."""
    skus = [f"S{i:02d}" for i in range(20)]
    spec = ChannelSpec("amazon", Capabilities(max_stock_batch=1, max_in_flight=5))
    store = _store(database, spec, skus)
    market = store.channels["amazon"].market
    market.faults.latency = 0.05
    market.faults.max_in_flight = 5  # the channel throttles a sixth call

    def change_all() -> None:
        def write(session: Session) -> None:
            for sku in skus:
                set_stock(session, sku, "default", 4)

        store.db.transact(write)

    change_all()
    asyncio.run(push_until_idle(store, channels=["amazon"]))
    assert market.calls["push_stock"] == len(skus)
    assert market.max_in_flight_seen == 5
    assert market.throttled["push_stock"] == 0
    _channel_matches_ledger(store, "amazon")


def test_holding_full_batches_sends_them_once_the_stream_pauses(database: Database) -> None:
    """With `hold_full` a full batch waits like a partial one, for the changes to pause."""
    skus = ["A", "B", "C", "D"]
    store = _store(database, ChannelSpec("shop", BATCH_4), skus)
    shop = _landing(store, "shop")
    quiet_s = 0.4
    policy = Coalescing(quiet_s=quiet_s, max_linger_s=LONG_S, hold_full=True)
    pusher = _pusher(store, "shop", policy)

    def change_all() -> None:
        def write(session: Session) -> None:
            for sku in skus:
                set_stock(session, sku, "default", 5)

        store.db.transact(write)

    async def scenario() -> float:
        async with _running(pusher):
            await asyncio.wait_for(pusher.wait_idle(), IDLE_TIMEOUT_S)
            await asyncio.to_thread(change_all)
            pusher.wake()
            return await _until(lambda: bool(shop.landed), within_s=LONG_S / 4)

    took = asyncio.run(scenario())
    assert took >= quiet_s * 0.9, f"a held full batch went after {took:.2f} s"
    assert [sorted(refs) for _at, refs in shop.landed] == [skus]
    _channel_matches_ledger(store, "shop")


class GatedConnector(LandingConnector):
    """A LandingConnector whose first call waits until the test opens the gate."""

    def __init__(self, market: MemoryMarketplace, spec: ChannelSpec) -> None:
        super().__init__(market, spec)
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.calls = 0

    async def push_stock(self, targets: Sequence[StockTarget]) -> Sequence[StockPushResult]:
        """The first call waits at the gate."""
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            await self.gate.wait()
        return await super().push_stock(targets)


def _gated(store: Store, spec: ChannelSpec) -> GatedConnector:
    channel = store.channels[spec.name]
    gated = GatedConnector(channel.market, spec)
    channel.connector = gated
    return gated


async def _first_push_held(
    store: Store, pusher: StockPusher, gated: GatedConnector, sku: str, units: int
) -> None:
    """Once the pusher is idle, set `sku` to `units`; return when its push waits at the gate."""
    await asyncio.wait_for(pusher.wait_idle(), IDLE_TIMEOUT_S)
    _set(store, sku, units)
    pusher.wake()
    await asyncio.wait_for(gated.entered.wait(), IDLE_TIMEOUT_S)


def test_a_change_left_behind_by_its_listings_push_in_flight_goes_while_the_store_stays_busy(
    database: Database,
) -> None:
    """S changes while S's previous push is in flight, so the claim leaves the new target
    pending; then only other commits keep the store busy (no pause ever comes). The target
    still goes within the linger once the first push lands."""
    store = _store(database, ChannelSpec("shop", BATCH_4), ["S"])
    gated = _gated(store, ChannelSpec("shop", BATCH_4))
    linger_s = 0.5
    # Waiting for a pause of a second: the commits below, 0.05 s apart, never give one.
    policy = Coalescing(quiet_s=1.0, stream_gap_s=1.0, max_linger_s=linger_s)
    pusher = _pusher(store, "shop", policy)

    async def busy_store(stop: asyncio.Event) -> None:
        while not stop.is_set():  # commits elsewhere: a stream that never pauses
            pusher.wake()
            await asyncio.sleep(0.05)

    async def scenario() -> float:
        async with _running(pusher):
            await _first_push_held(store, pusher, gated, "S", 7)
            await asyncio.to_thread(_set, store, "S", 5)
            pusher.wake()
            stop = asyncio.Event()
            busy = asyncio.create_task(busy_store(stop))
            try:
                # Past the linger: the new target's claim came and skipped it (S in flight).
                await asyncio.sleep(3 * linger_s)
                gated.gate.set()
                return await _until(lambda: len(gated.landed) >= 2, within_s=10 * linger_s)
            finally:
                stop.set()
                await busy

    took = asyncio.run(scenario())
    assert gated.landed[1][1] == ["S"]
    assert took < 10 * linger_s
    _channel_matches_ledger(store, "shop")


def test_a_push_to_the_last_units_goes_while_every_slot_is_busy(database: Database) -> None:
    """A channel of one call at a time is pushing A, and the call is slow; meanwhile S drops
    to its last unit. S's push goes beside A's in the extra slot, before A's call answers,
    with B's ordinary change as company."""
    spec = ChannelSpec("shop", Capabilities(max_stock_batch=4, max_in_flight=1))
    store = _store(database, spec, ["A", "B", "S"])
    gated = _gated(store, spec)
    pusher = _pusher(store, "shop", Coalescing(quiet_s=0.05, max_linger_s=0.2))

    async def scenario() -> None:
        async with _running(pusher):
            await _first_push_held(store, pusher, gated, "A", 7)
            await asyncio.to_thread(_set, store, "B", 6)
            await asyncio.to_thread(_set, store, "S", 1)
            pusher.wake()
            try:
                await _until(lambda: bool(gated.landed), within_s=IDLE_TIMEOUT_S)
            finally:
                gated.gate.set()
            await asyncio.wait_for(pusher.wait_idle(), IDLE_TIMEOUT_S)

    asyncio.run(scenario())
    assert [sorted(refs) for _at, refs in gated.landed] == [["B", "S"], ["A"]]
    _channel_matches_ledger(store, "shop")


# --- what a push records ----------------------------------------------------------------------


class PartingConnector(LandingConnector):
    """Parts a batch as Amazon does above its feed threshold: the urgent targets (patched at
    once) apart from the rest, whose call (the feed) waits at a gate the test opens."""

    def __init__(self, market: MemoryMarketplace, spec: ChannelSpec) -> None:
        super().__init__(market, spec)
        self.gate = asyncio.Event()

    def stock_push_parts(self, targets: Sequence[StockTarget]) -> list[list[int]]:
        """Urgent targets in one part, the rest in another."""
        urgent = [i for i, target in enumerate(targets) if target.urgent]
        return [urgent, [i for i in range(len(targets)) if i not in urgent]]

    async def push_stock(self, targets: Sequence[StockTarget]) -> Sequence[StockPushResult]:
        """A call with anything but urgent targets waits at the gate."""
        if not all(target.urgent for target in targets):
            await self.gate.wait()
        return await super().push_stock(targets)


def test_a_listing_pushed_apart_from_a_slow_part_of_its_batch_is_free_for_its_next_push(
    database: Database,
) -> None:
    """S drops to its last 2 units as T changes, in one batch; the connector sends S apart
    from T's slow part (Amazon: a patch beside a feed it processes for minutes). S sells out
    while T's part is still in flight: that push goes at once, not once T's part is done."""
    spec = ChannelSpec("shop", CAS)
    store = _store(database, spec, ["S", "T"])
    channel = store.channels["shop"]
    parting = PartingConnector(channel.market, spec)
    channel.connector = parting
    pusher = _pusher(store, "shop", Coalescing(quiet_s=LONG_S, max_linger_s=LONG_S))

    def patches_of_s() -> int:
        return sum(refs == ["S"] for _at, refs in parting.landed)

    async def scenario() -> None:
        async with _running(pusher):
            try:
                await asyncio.wait_for(pusher.wait_idle(), IDLE_TIMEOUT_S)
                await asyncio.to_thread(_write_stock, store, {"S": 2, "T": 7})
                pusher.wake()
                await _until(lambda: patches_of_s() == 1, within_s=5.0)
                await asyncio.to_thread(_set, store, "S", 0)
                pusher.wake()
                await _until(lambda: patches_of_s() == 2, within_s=5.0)
                assert channel.market.stock_of("S") == 0
            finally:
                parting.gate.set()  # T's part lands only now
            await asyncio.wait_for(pusher.wait_idle(), IDLE_TIMEOUT_S)

    asyncio.run(scenario())
    _channel_matches_ledger(store, "shop")


class OvertakenConnector(LandingConnector):
    """A channel without compare-and-swap whose ordinary pushes are slow (Amazon's feeds):
    they wait at `slow_gate`, then apply. Urgent ones apply at once and answer (land) when
    `urgent_gate` opens, so the test sets the order in which the two land."""

    def __init__(self, market: MemoryMarketplace, spec: ChannelSpec) -> None:
        super().__init__(market, spec)
        self.slow_gate = asyncio.Event()
        self.urgent_gate = asyncio.Event()

    def stock_push_is_slow(self, targets: Sequence[StockTarget]) -> bool:
        """Slow unless every target is urgent."""
        return not all(target.urgent for target in targets)

    async def push_stock(self, targets: Sequence[StockTarget]) -> Sequence[StockPushResult]:
        """Slow: wait, then apply. Urgent: apply, then wait to answer."""
        if self.stock_push_is_slow(targets):
            await self.slow_gate.wait()
            return await super().push_stock(targets)
        results = await super().push_stock(targets)
        await self.urgent_gate.wait()
        return results


def _job_of_7(store: Store, state: JobState) -> bool:
    """S's push of 7 is in this state."""
    with store.db.read_session() as session:
        return any(
            job.state == state and job.payload["quantity"] == 7
            for job in session.scalars(select(OutboxJob).where(OutboxJob.kind == JobKind.STOCK))
        )


@pytest.mark.parametrize("overtaker_lands", ["first", "last"])
def test_a_sold_out_push_overtakes_a_slow_push_and_the_newest_figure_ends_on_the_channel(
    database: Database, overtaker_lands: str
) -> None:
    """S goes from 10 to 7 in a slow push (a feed Amazon processes for minutes), then sells
    out: the sold-out push goes at once, beside it. The slow push then applies 7 after the 0
    (the channel may process them in any order): once it lands, S is pushed again and ends at
    0, whether the overtaking push had landed before (its answer recorded first) or not."""
    spec = ChannelSpec("shop", Capabilities(max_stock_batch=250, max_in_flight=2))
    store = _store(database, spec, ["S", "T"])
    channel = store.channels["shop"]
    connector = OvertakenConnector(channel.market, spec)
    channel.connector = connector
    pusher = _pusher(store, "shop", Coalescing(quiet_s=0.0, max_linger_s=0.0))
    market = channel.market
    if overtaker_lands == "first":
        connector.urgent_gate.set()

    async def scenario() -> None:
        async with _running(pusher):
            try:
                await asyncio.to_thread(_set, store, "S", 7)
                pusher.wake()
                await _until(lambda: _job_of_7(store, JobState.RUNNING), within_s=5.0)
                await asyncio.to_thread(_set, store, "S", 0)
                pusher.wake()
                await _until(lambda: market.stock_of("S") == 0, within_s=5.0)
                connector.slow_gate.set()  # 7 applies after the 0 ...
                await _until(
                    lambda: _job_of_7(store, JobState.DONE), within_s=5.0
                )  # ... and is recorded
                assert market.stock_of("S") in (0, 7)
            finally:
                connector.slow_gate.set()
                connector.urgent_gate.set()
            await asyncio.wait_for(pusher.wait_idle(), IDLE_TIMEOUT_S)

    asyncio.run(scenario())
    assert market.stock_of("S") == 0
    # The slow 7 applied after the 0 that overtook it, and the 0 went again after both.
    assert market.pushes["S"][-3:] == [0, 7, 0]
    _channel_matches_ledger(store, "shop")


def _write_stock(store: Store, on_hand: Mapping[str, int]) -> None:
    def write(session: Session) -> None:
        for sku, figure in on_hand.items():
            set_stock(session, sku, "default", figure)

    store.db.transact(write)


class LateRecordConnector(MemoryConnector):
    """A compare-and-swap channel where a buyer takes a unit just before our first push
    arrives, and two more just after it answers; all three sales are ingested before the
    pusher records that answer (a busy store delays the recording)."""

    def __init__(self, store: Store, spec: ChannelSpec) -> None:
        super().__init__(
            store.channels[spec.name].market, name=spec.name, capabilities=spec.capabilities
        )
        self.store = store
        self.armed = True
        self.sold: list[Order] = []
        self.marketplace.faults.on_push = self._sell_first

    def _sell_first(self, _targets: Sequence[StockTarget]) -> None:
        if self.armed:
            self.sold = [self.marketplace.place_order([("S", 1)])]

    async def push_stock(self, targets: Sequence[StockTarget]) -> Sequence[StockPushResult]:
        """Push; on the first call, sell two more and ingest the three sales before answering."""
        results = await super().push_stock(targets)
        if self.armed:
            self.armed = False
            self.sold.append(self.marketplace.place_order([("S", 2)]))
            await asyncio.to_thread(self.store.ingest, self.name, self.sold)
        return results


def test_sales_ingested_after_a_conflict_answer_are_not_counted_again(
    database: Database,
) -> None:
    """The channel shows 10. A sale elsewhere asks for 9; the channel sold 1 meanwhile, so it
    answers "conflict, I hold 9", which is the target: nothing to send. By the time that answer
    is recorded, the channel sold 2 more and all 3 sales are ingested, so the belief is 7,
    the channel's figure. Taking 9 + 0 unseen as the belief instead reads the next conflict as
    2 unseen sales and ends the channel 2 below what the rules give."""
    spec = ChannelSpec("shop", CAS)
    store = _store(database, spec, ["S"])
    shop = store.channels["shop"]
    shop.connector = LateRecordConnector(store, spec)
    other = store.channels["other"].market

    store.ingest("other", [other.place_order([("S", 1)])])
    asyncio.run(push_until_idle(store))
    _channel_matches_ledger(store, "shop")
    assert shop.market.stock_of("S") == 6


def test_unseen_sales_ingested_before_the_retry_leaves_are_not_subtracted_twice(
    database: Database,
) -> None:
    """The shop shows 10. A sale elsewhere asks for 9, but a buyer took 1 on the shop first:
    "conflict, I hold 9", so 1 unseen sale, and the retry is to send 9 - 1 = 8 expecting 9.
    Before the retry leaves, that sale is ingested: the ledger gives 8, the belief is 9. The
    retry must not subtract the sale again, nor believe afterwards that the shop holds 9."""
    spec = ChannelSpec("shop", CAS)
    store = _store(database, spec, ["S"])
    shop = store.channels["shop"]
    plans = {shop.id: shop.plan}
    store.ingest("other", [store.channels["other"].market.place_order([("S", 1)])])

    def push_once(session: Session) -> None:
        jobs = claim(
            session,
            channel_id=shop.id,
            kinds=[JobKind.STOCK],
            limit=10,
            owner="test",
            lease=timedelta(minutes=1),
        )
        batch = prepare_batch(session, jobs, compare_and_swap=True)
        results = asyncio.run(shop.connector.push_stock(batch.targets))
        record_results(session, batch, results)

    store.db.transact(lambda session: plan_targets(session, plans))
    sale = shop.market.place_order([("S", 1)])  # the shop now shows 9
    store.db.transact(push_once)  # conflict: the shop holds 9
    store.ingest("shop", [sale])
    store.db.transact(push_once)  # the retry, claimed before anything is planned again
    asyncio.run(push_until_idle(store))
    _channel_matches_ledger(store, "shop")
    assert shop.market.stock_of("S") == 8


def test_a_listing_another_transaction_holds_does_not_hold_up_the_rest_of_its_batch(
    database: Database,
) -> None:
    """PostgreSQL: while a push of S and T is out, another transaction (an ingest, say) locks
    S's listing. The answer for T is recorded at once; S's once the lock is gone, and the
    pusher neither waits on the lock nor deadlocks with its holder."""
    if database.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: no row is held apart")
    store = _store(database, ChannelSpec("shop", BATCH_4), ["S", "T"])
    shop = store.channels["shop"]
    with database.read_session() as session:
        listing_ids: dict[str, int] = {
            ref: listing_id
            for ref, listing_id in session.execute(
                select(Listing.external_ref, Listing.id).where(Listing.channel_id == shop.id)
            )
        }
    holder = database.engine.connect()
    holder.begin()

    def hold_s(_targets: Sequence[StockTarget]) -> None:
        holder.execute(
            text("SELECT id FROM listings WHERE id = :id FOR UPDATE"), {"id": listing_ids["S"]}
        )
        shop.market.faults.on_push = None

    def job_state(ref: str) -> JobState:
        with database.read_session() as session:
            return (
                session.scalars(
                    select(OutboxJob.state)
                    .where(OutboxJob.identity_key == f"stock:{listing_ids[ref]}")
                    .order_by(OutboxJob.id.desc())
                ).first()
                or JobState.PENDING
            )

    def change_both(session: Session) -> None:
        set_stock(session, "S", "default", 4)
        set_stock(session, "T", "default", 5)

    pusher = _pusher(store, "shop", Coalescing(quiet_s=0.0))

    async def scenario() -> None:
        async with _running(pusher):
            await asyncio.wait_for(pusher.wait_idle(), IDLE_TIMEOUT_S)
            shop.market.faults.on_push = hold_s
            await asyncio.to_thread(store.db.transact, change_both)
            pusher.wake()
            await _until(lambda: job_state("T") == JobState.DONE, within_s=IDLE_TIMEOUT_S)
            assert job_state("S") == JobState.RUNNING
            holder.rollback()
            await asyncio.wait_for(pusher.wait_idle(), IDLE_TIMEOUT_S)

    try:
        asyncio.run(scenario())
    finally:
        holder.close()
    assert job_state("S") == JobState.DONE
    _channel_matches_ledger(store, "shop")


def test_a_channel_files_push_settings_override_only_what_they_name() -> None:
    batching = Capabilities(max_stock_batch=250, max_in_flight=4)
    default = Coalescing.for_capabilities(batching)
    economy = Coalescing.tuned(batching, max_linger_s=60.0, hold_full=True)
    assert (economy.max_linger_s, economy.hold_full) == (60.0, True)
    assert (economy.quiet_s, economy.stream_gap_s) == (default.quiet_s, default.stream_gap_s)
    assert Coalescing.tuned(batching) == default
    assert Coalescing.tuned(batching, confirm_hold_s=0.0).confirm_hold_s == 0.0


def test_holding_full_batches_waits_out_the_whole_stream_gap_however_regular_the_stream() -> None:
    """The fewest-calls setting: a busy process sees its own commits in clumps, so only a
    silence of the full configured gap ends the burst."""
    policy = Coalescing(quiet_s=0.05, stream_gap_s=10.0, max_linger_s=LONG_S, hold_full=True)
    stream = _noted(policy, *(100.0 + tick * 0.1 for tick in range(11)))
    assert stream.partial_at(policy) == pytest.approx(101.0 + 10.0)
