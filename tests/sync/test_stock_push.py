"""Stock out against the reference channels: compare-and-swap, batching, ordering, failures."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import Capabilities, PushOutcome, StockPushResult, StockTarget
from connectors.errors import (
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.memory import MemoryConnector, MemoryMarketplace
from sync.db import Database
from sync.models import LANE_CONFIRM, LANE_NORMAL, JobKind, JobState, Listing, OutboxJob, utcnow
from sync.outbox import RetrySchedule, list_jobs, reap_expired
from sync.push_store import Landed
from sync.pusher import StockPusher
from sync.reservations import StockRules
from sync.stock_ops import set_stock
from sync.stock_push import PushBatch, plan_targets
from tests.sync.engine_harness import (
    IDLE_TIMEOUT_S,
    ChannelSpec,
    Store,
    StoreSpec,
    build_store,
    channel_stock,
    expected_channel_quantities,
    push_until_idle,
)

CAS = Capabilities(max_stock_batch=250, max_in_flight=2, supports_compare_and_swap=True)
PLAIN = Capabilities(max_stock_batch=4, max_in_flight=2)


def _one_sku_store(database: Database, *channels: ChannelSpec, on_hand: int = 10) -> Store:
    spec = StoreSpec(channels=channels, skus=["S"], on_hand={("S", "default"): on_hand})
    return build_store(database, spec)


def _expected(store: Store, channel: str) -> int:
    with store.db.read_session() as session:
        return expected_channel_quantities(session, store)[channel]["S"]


def test_a_sale_on_the_cas_channel_itself_is_not_subtracted_twice(database: Database) -> None:
    """The channel lowered its own stock when the buyer bought; once the order is ingested, the
    ledger already counts those units, so the channel must end at what the rules give."""
    store = _one_sku_store(database, ChannelSpec("shop", CAS))
    market = store.channels["shop"].market

    async def scenario() -> None:
        await push_until_idle(store)
        assert market.stock_of("S") == 10
        store.ingest("shop", [market.place_order([("S", 2)])])
        await push_until_idle(store)

    asyncio.run(scenario())
    assert _expected(store, "shop") == 8
    assert market.stock_of("S") == 8, f"pushes {market.pushes['S']}"


def test_a_sale_that_leaves_the_channel_quantity_unchanged_still_repairs_the_channel(
    database: Database,
) -> None:
    """max_shown 5 of 10 available: a buyer takes 2 (the channel shows 3), the ledger still gives
    5, so the channel must be told 5 again, though the target equals the last one pushed."""
    store = _one_sku_store(database, ChannelSpec("shop", PLAIN, StockRules(max_shown=5)))
    market = store.channels["shop"].market

    async def scenario() -> None:
        await push_until_idle(store)
        assert market.stock_of("S") == 5
        store.ingest("shop", [market.place_order([("S", 2)])])
        await push_until_idle(store)

    asyncio.run(scenario())
    assert _expected(store, "shop") == 5
    assert market.stock_of("S") == 5, f"pushes {market.pushes['S']}"


def _sell_during_push(store: Store, channel: str, units: int) -> list[str]:
    """Arm the channel so that a buyer buys `units` of S while the next push is in flight."""
    market = store.channels[channel].market
    placed: list[str] = []

    def sell(_targets: Sequence[StockTarget]) -> None:
        if not placed:
            placed.append(market.place_order([("S", units)]).external_id)

    market.faults.on_push = sell
    return placed


def _conflict_scenario(database: Database, capabilities: Capabilities) -> tuple[int, int, int]:
    """A sale elsewhere triggers a push; meanwhile the channel sells 2 we have not ingested.

    Answers (rules for the ledger before the 2 are ingested, channel then, channel after ingest).
    """
    store = _one_sku_store(database, ChannelSpec("shop", capabilities), ChannelSpec("other", PLAIN))
    shop = store.channels["shop"].market
    other = store.channels["other"].market

    async def scenario() -> tuple[int, int, int]:
        await push_until_idle(store)
        placed = _sell_during_push(store, "shop", 2)
        store.ingest("other", [other.place_order([("S", 1)])])
        await push_until_idle(store)
        assert placed, "the push to the shop never happened"
        shop.faults.on_push = None
        before_ingest = shop.stock_of("S")
        expected_before = _expected(store, "shop")
        store.ingest("shop", [shop.order(placed[0])])
        await push_until_idle(store)
        return expected_before, before_ingest, shop.stock_of("S")

    return asyncio.run(scenario())


def test_compare_and_swap_keeps_an_unseen_sale_off_the_channel(database: Database) -> None:
    """The channel sells 2 not yet ingested while a push is in flight: CAS ends at the right
    quantity (2 under the ledger's view), not 2 too high, and stays right once ingested."""
    ledger_before, before_ingest, after_ingest = _conflict_scenario(database, CAS)
    assert ledger_before == 9
    assert before_ingest == 7
    assert after_ingest == 7


def test_without_compare_and_swap_an_unseen_sale_shows_2_too_many_until_ingested(
    database: Database,
) -> None:
    """Documents why CAS matters: a plain overwrite hides the 2 units sold meanwhile until the
    order is ingested; then the channel is repaired."""
    ledger_before, before_ingest, after_ingest = _conflict_scenario(database, PLAIN)
    assert ledger_before == 9
    assert before_ingest == 9  # two too many: 7 are really left
    assert after_ingest == 7


# --- the channel lowers its own count: cases the engine must still follow ------------------------


@pytest.mark.parametrize("capabilities", [CAS, PLAIN], ids=["cas", "plain"])
def test_a_sale_on_the_channel_itself_is_confirmed_after_the_channels_changes(
    database: Database, capabilities: Capabilities
) -> None:
    """The channel sold 2 of S itself (it shows 8) while T changed here. What we believe it
    shows for S goes down by 2, with or without compare-and-swap, and the push that confirms
    it waits in the confirmation lane behind T's change; both reach the channel."""
    spec = StoreSpec(
        channels=[ChannelSpec("market", capabilities)],
        skus=["S", "T"],
        on_hand={("S", "default"): 10, ("T", "default"): 10},
    )
    store = build_store(database, spec)
    market = store.channels["market"].market

    async def scenario() -> None:
        await push_until_idle(store)
        store.ingest("market", [market.place_order([("S", 2)])])
        store.db.transact(lambda session: set_stock(session, "T", "default", 5))
        plans = {store.channels["market"].id: store.channels["market"].plan}
        store.db.transact(lambda session: plan_targets(session, plans))
        with store.db.read_session() as session:
            belief = {row.sku: row.last_pushed_quantity for row in session.scalars(select(Listing))}
            lanes = {
                job.payload["listing_ref"]: (job.lane, job.payload["quantity"])
                for job in session.scalars(select(OutboxJob).where(OutboxJob.state == "pending"))
            }
        assert belief["S"] == 8
        assert lanes == {"S": (LANE_CONFIRM, 8), "T": (LANE_NORMAL, 5)}
        await push_until_idle(store)

    asyncio.run(scenario())
    assert market.stock_of("S") == 8
    assert market.stock_of("T") == 5
    assert market.pushes["S"][-1] == 8


@pytest.mark.parametrize("capabilities", [CAS, PLAIN], ids=["cas", "plain"])
def test_an_order_first_seen_cancelled_still_counts_the_sale_the_channel_made(
    database: Database, capabilities: Capabilities
) -> None:
    """A buyer buys 3 (the channel shows 7) and cancels before we hear of the order; the first
    version we ingest is the cancelled one. The reference channel does not restock a cancelled
    order, so it keeps showing 7 unless we push: the ledger gives 10.

    Counting the sale as the growth in *live* units (ordered - cancelled) would count 0 here and
    leave the belief at 10 = the target, so nothing would be pushed; had the open version come
    first, the cancel would have pushed 10. A sale counts the units ordered, whichever version
    is seen first.
    """
    store = _one_sku_store(database, ChannelSpec("shop", capabilities))
    market = store.channels["shop"].market

    async def scenario() -> None:
        await push_until_idle(store)
        placed = market.place_order([("S", 3)])
        cancelled = market.cancel(placed.external_id)
        store.ingest("shop", [cancelled])
        await push_until_idle(store)
        store.ingest("shop", [placed])  # the older delivery, late: changes nothing
        await push_until_idle(store)

    asyncio.run(scenario())
    assert _expected(store, "shop") == 10
    assert market.stock_of("S") == 10, f"pushes {market.pushes['S']}"


def test_a_sale_the_channel_could_not_show_in_full_is_not_subtracted_twice(
    database: Database,
) -> None:
    """The reference channel oversells itself and shows 0, never below: a buyer takes 3 where
    it showed 1. A restock pushes before the order is ingested: compare-and-swap finds 1 unit
    gone (all it can see), pushes 10 and believes 11. Ingesting the order then subtracts all 3
    sold from that belief (8 = the ledger's target), so nothing is pushed and the channel keeps
    showing 10 where the rules give 8: two units it does not have.
    """
    store = _one_sku_store(database, ChannelSpec("shop", CAS), on_hand=1)
    market = store.channels["shop"].market

    async def scenario() -> None:
        await push_until_idle(store)
        assert market.stock_of("S") == 1
        placed = market.place_order([("S", 3)])
        assert market.stock_of("S") == 0
        database.transact(lambda session: set_stock(session, "S", "default", 11))
        await push_until_idle(store)
        store.ingest("shop", [placed])
        await push_until_idle(store)

    asyncio.run(scenario())
    assert _expected(store, "shop") == 8
    assert market.stock_of("S") == 8, f"pushes {market.pushes['S']}"


# --- batching, coalescing, ordering -------------------------------------------------------------

BATCHING = (
    ChannelSpec(
        "shop", Capabilities(max_stock_batch=250, max_in_flight=2, supports_compare_and_swap=True)
    ),
    ChannelSpec("amazon", Capabilities(max_stock_batch=4, max_in_flight=2)),
    ChannelSpec("ebay", Capabilities(max_stock_batch=1, max_in_flight=3)),
)


def test_dirty_listings_go_out_in_as_few_calls_as_the_batch_limits_allow(
    database: Database,
) -> None:
    skus = [f"S{n:03}" for n in range(100)]
    spec = StoreSpec(
        channels=BATCHING, skus=skus, on_hand={(sku, "default"): n for n, sku in enumerate(skus)}
    )
    store = build_store(database, spec)
    for channel in store.channels.values():
        # The marketplace refuses calls past the limit, as a real one throttles.
        channel.market.faults.max_in_flight = channel.spec.capabilities.max_in_flight
        channel.market.faults.latency = 0.002

    pusher = asyncio.run(push_until_idle(store))

    with database.read_session() as session:
        expected = expected_channel_quantities(session, store)
    assert channel_stock(store) == expected
    for name, channel in store.channels.items():
        caps, market = channel.spec.capabilities, channel.market
        assert market.calls["push_stock"] == math.ceil(100 / caps.max_stock_batch), name
        assert max(market.batch_sizes) <= caps.max_stock_batch, name
        assert sum(market.batch_sizes) == 100, name
        assert 1 <= market.max_in_flight_seen <= caps.max_in_flight, name
        assert market.throttled["push_stock"] == 0, name
    assert pusher.summary.applied == 300


def test_a_target_equal_to_what_the_channel_holds_is_not_sent(database: Database) -> None:
    """Capped at 5: stock moving between 10 and 12 leaves the channel at 5, so no call."""
    store = _one_sku_store(
        database,
        ChannelSpec("capped", PLAIN, StockRules(max_shown=5)),
        ChannelSpec("all", CAS),
    )
    capped, shown_all = store.channels["capped"].market, store.channels["all"].market
    asyncio.run(push_until_idle(store))
    assert (capped.calls["push_stock"], shown_all.calls["push_stock"]) == (1, 1)

    database.transact(lambda session: set_stock(session, "S", "default", 12))
    asyncio.run(push_until_idle(store))
    assert capped.calls["push_stock"] == 1, f"pushes {capped.pushes}"
    assert shown_all.pushes["S"] == [10, 12]

    database.transact(lambda session: set_stock(session, "S", "default", 12))  # unchanged
    asyncio.run(push_until_idle(store))
    assert (capped.calls["push_stock"], shown_all.calls["push_stock"]) == (1, 2)
    assert (capped.stock_of("S"), shown_all.stock_of("S")) == (5, 12)


def test_planning_weighs_the_newest_of_two_pushes_in_flight(database: Database) -> None:
    """A sold-out push in flight beside an older, slow one (see `outbox.claim`): the channel is
    about to be told 0, not 7, so a ledger at 0 plans nothing more, whichever row comes first."""
    store = _one_sku_store(database, ChannelSpec("slow", PLAIN))
    asyncio.run(push_until_idle(store))
    channel = store.channels["slow"]

    def in_flight(session: Session) -> None:
        listing = session.scalars(select(Listing).where(Listing.channel_id == channel.id)).one()
        key = f"stock:{listing.id}"
        for seq, quantity in ((3, 0), (2, 7)):  # the newest row first
            session.add(
                OutboxJob(
                    channel_id=channel.id,
                    kind=JobKind.STOCK,
                    identity_key=key,
                    payload={"listing_id": listing.id, "quantity": quantity, "seq": seq},
                    state=JobState.RUNNING,
                    lane=LANE_NORMAL,
                )
            )
        listing.target_seq = 3
        set_stock(session, "S", "default", 0)

    database.transact(in_flight)
    planned = database.transact(lambda session: plan_targets(session, {channel.id: channel.plan}))
    assert planned == {}


def _set_on_hand(database: Database, sku: str, on_hand: int) -> None:
    database.transact(lambda session: set_stock(session, sku, "default", on_hand))


@pytest.mark.parametrize("spec", BATCHING, ids=[c.name for c in BATCHING])
def test_no_older_target_lands_after_a_newer_one_under_latency_and_failures(
    database: Database, spec: ChannelSpec
) -> None:
    """Stock changes while pushes are in flight (the channel's push hook makes the next changes,
    so they land mid-call), some calls fail before applying and some after (applied, answer
    lost): every figure the channel applies is one planned no earlier than the last one it
    applied, and it ends at what the rules give."""
    skus = ["S0", "S1", "S2", "S3", "S4"]
    store = build_store(
        database, StoreSpec(channels=[spec], skus=skus, on_hand={(s, "default"): 0 for s in skus})
    )
    market = store.channels[spec.name].market
    market.faults.latency = 0.001
    market.faults.fail_rate_before = 0.2
    market.faults.fail_rate_after = 0.2
    rng = random.Random(5)
    # Distinct on-hand figures per SKU, so each applied figure names the one target it was.
    changes = [(sku, on_hand) for sku in skus for on_hand in rng.sample(range(1, 60), 12)]
    rng.shuffle(changes)
    planned: dict[str, list[int]] = {sku: [0] for sku in skus}
    pusher = StockPusher(
        database,
        store.push_channels(),
        idle_s=0.05,
        retry=RetrySchedule(base_s=0.01, cap_s=0.05, max_attempts=100),
    )

    def change(count: int) -> None:
        for _ in range(count):
            if changes:
                sku, on_hand = changes.pop()
                _set_on_hand(database, sku, on_hand)
                planned[sku].append(on_hand)
        pusher.wake()

    market.faults.on_push = lambda _targets: change(rng.randint(0, 3))

    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(pusher.run(stop))
        try:
            while True:
                await asyncio.wait_for(pusher.wait_idle(), IDLE_TIMEOUT_S)
                if not changes:
                    break
                await asyncio.to_thread(change, 1)
        finally:
            stop.set()
            await asyncio.wait_for(running, IDLE_TIMEOUT_S)

    asyncio.run(scenario())
    assert market.calls["push_stock"] > 2 * len(skus)
    for sku in skus:
        applied = market.pushes[sku]
        assert set(applied) <= set(planned[sku]), (
            f"{sku}: planned {planned[sku]}, applied {applied}"
        )
        order = [planned[sku].index(quantity) for quantity in applied]
        assert order == sorted(order), f"{sku}: planned {planned[sku]}, applied {applied}"
        assert applied[-1] == planned[sku][-1] == market.stock_of(sku)
    with database.read_session() as session:
        assert list_jobs(session, state=JobState.DEAD) == []


# --- failures -------------------------------------------------------------------------------------

FAST_RETRY = RetrySchedule(base_s=0.01, cap_s=0.05, max_attempts=5)


class AnsweringConnector(MemoryConnector):
    """A reference connector whose channel answers REJECTED or RETRY for chosen listings."""

    def __init__(self, market: MemoryMarketplace, spec: ChannelSpec) -> None:
        super().__init__(market, name=spec.name, capabilities=spec.capabilities)
        self.reject: dict[str, str] = {}
        self.retry_once: set[str] = set()

    async def push_stock(self, targets: Sequence[StockTarget]) -> Sequence[StockPushResult]:
        """Refuse or defer the chosen listings, and let the channel apply the rest."""
        answers = [
            StockPushResult(t.listing_ref, PushOutcome.REJECTED, error=self.reject[t.listing_ref])
            for t in targets
            if t.listing_ref in self.reject
        ]
        deferred = {t.listing_ref for t in targets} & self.retry_once
        self.retry_once -= deferred
        answers += [StockPushResult(ref, PushOutcome.RETRY, error="try later") for ref in deferred]
        rest = [t for t in targets if t.listing_ref not in self.reject.keys() | deferred]
        return [*answers, *(await super().push_stock(rest))]


def _push_fast(store: Store) -> StockPusher:
    return asyncio.run(push_until_idle(store, retry=FAST_RETRY))


def _dead_jobs(database: Database) -> list[tuple[str, str | None]]:
    with database.read_session() as session:
        return [
            (job.payload["listing_ref"], job.last_error)
            for job in list_jobs(session, state=JobState.DEAD)
        ]


@pytest.mark.parametrize(
    "error",
    [RetryableError("connection reset"), RateLimitedError("slow down", retry_after=0.01)],
    ids=["retryable", "rate-limited"],
)
def test_a_retryable_failure_is_retried_until_the_channel_applies(
    database: Database, error: RetryableError
) -> None:
    store = _one_sku_store(database, ChannelSpec("shop", PLAIN))
    market = store.channels["shop"].market
    market.faults.fail_next("push_stock", error, times=3)
    pusher = _push_fast(store)
    assert market.calls["push_stock"] == 4
    assert market.pushes["S"] == [10]
    assert pusher.summary.retried == 3
    assert _dead_jobs(database) == []


def test_a_listing_the_channel_asks_to_retry_is_sent_again(database: Database) -> None:
    spec = ChannelSpec("shop", PLAIN)
    store = build_store(
        database,
        StoreSpec(channels=[spec], skus=["S", "T"], on_hand={("S", "default"): 4}),
    )
    channel = store.channels["shop"]
    connector = AnsweringConnector(channel.market, spec)
    connector.retry_once = {"S"}
    channel.connector = connector
    _push_fast(store)
    assert channel.market.pushes == {"S": [4], "T": [0]}
    assert _dead_jobs(database) == []


def test_a_permanent_failure_is_dead_at_once_with_the_channel_reason(database: Database) -> None:
    store = _one_sku_store(database, ChannelSpec("shop", PLAIN))
    market = store.channels["shop"].market
    market.faults.fail_next("push_stock", PermanentError("SKU S is blocked for selling"))
    _push_fast(store)
    assert market.calls["push_stock"] == 1
    assert "S" not in market.pushes
    [(ref, reason)] = _dead_jobs(database)
    assert ref == "S"
    assert reason is not None and "SKU S is blocked for selling" in reason


def test_a_listing_the_channel_rejects_is_dead_with_its_reason_and_the_rest_applied(
    database: Database,
) -> None:
    spec = ChannelSpec("shop", CAS)
    store = build_store(
        database,
        StoreSpec(channels=[spec], skus=["S", "T"], on_hand={("S", "default"): 4}),
    )
    channel = store.channels["shop"]
    connector = AnsweringConnector(channel.market, spec)
    connector.reject = {"T": "listing T was removed by the channel"}
    channel.connector = connector
    _push_fast(store)
    assert channel.market.pushes == {"S": [4]}
    assert _dead_jobs(database) == [("T", "listing T was removed by the channel")]
    assert channel.market.calls["push_stock"] == 1


def test_a_lost_answer_on_a_compare_and_swap_channel_is_not_read_as_sales(
    database: Database,
) -> None:
    """The channel applies 4 (down from 10) but the answer is lost. The retry still expects 10,
    so compare-and-swap reports a conflict with the channel at 4: our own push, not 6 units sold.
    Reading it as 6 unseen sales sends max(0, 4 - 6) = 0 and the channel ends at 0, not 4."""
    store = _one_sku_store(database, ChannelSpec("shop", CAS))
    market = store.channels["shop"].market
    asyncio.run(push_until_idle(store))
    assert market.stock_of("S") == 10
    market.faults.fail_next("push_stock", UncertainOutcomeError("timed out after sending"))
    database.transact(lambda session: set_stock(session, "S", "default", 4))
    _push_fast(store)
    assert _expected(store, "shop") == 4
    assert market.stock_of("S") == 4, f"pushes {market.pushes['S']}"


def test_units_sold_unseen_down_to_zero_stay_sold_after_a_later_push(database: Database) -> None:
    """The channel sells all 10 it shows before we hear of it. A restock to 12 pushes: the
    compare-and-swap conflict finds 0, so 2 (12 minus the 10 unseen) is set. The store must
    remember those 10 as sold-but-not-ingested, as after any conflict: a restock to 13 then
    shows 3, and once the order is ingested the ledger gives 3 too.

    Believing the channel holds just the 2 it was set to, the next push (13, expecting 2)
    applies and brings the 10 sold units back; ingesting the order lowers the belief to 3, the
    ledger's figure, so nothing repairs the channel showing 13.
    """
    store = _one_sku_store(database, ChannelSpec("shop", CAS))
    market = store.channels["shop"].market
    asyncio.run(push_until_idle(store))
    placed = market.place_order([("S", 10)])
    assert market.stock_of("S") == 0
    database.transact(lambda session: set_stock(session, "S", "default", 12))
    asyncio.run(push_until_idle(store))
    assert market.stock_of("S") == 2
    database.transact(lambda session: set_stock(session, "S", "default", 13))
    asyncio.run(push_until_idle(store))
    store.ingest("shop", [placed])
    asyncio.run(push_until_idle(store))
    assert _expected(store, "shop") == 3
    assert market.stock_of("S") == 3, f"pushes {market.pushes['S']}"


def test_a_push_answered_after_its_lease_ran_out_does_not_become_the_channels_figure(
    database: Database,
) -> None:
    """A call outlasts its lease (a timeout plus the connector's retries): the job is reaped, a
    newer target is claimed, pushed and recorded, and only then does the old call write its
    figure to the channel and come back. That late answer must not be taken as what the channel
    shows: the listing is planned again and the channel ends at the current figure."""
    store = _one_sku_store(database, ChannelSpec("ch"), on_hand=10)
    channel = store.push_channels()[0]
    market = store.channels["ch"].market
    pusher = StockPusher(
        database,
        [channel],
        lease=timedelta(seconds=30),
        retry=RetrySchedule(base_s=0.01, cap_s=0.05, max_attempts=100),
    )
    plans = {channel.channel_id: channel.plan}
    market.stock["S"] = 0

    async def push(batch: PushBatch) -> Landed:
        return Landed(batch, results=await channel.connector.push_stock(batch.targets))

    async def scenario() -> None:
        pusher._plan(plans)
        (old,) = pusher._step(channel, [], free=1).batches  # S -> 10, claimed
        assert [t.quantity for t in old.targets] == [10]
        # The old call hangs past its lease: the job goes back, and the stock changes.
        later = utcnow() + timedelta(seconds=60)
        assert database.transact(lambda session: reap_expired(session, later)) == 1
        _set_on_hand(database, "S", 7)
        pusher._plan(plans)
        (new,) = pusher._step(channel, [], free=1).batches
        assert [t.quantity for t in new.targets] == [7]
        pusher._step(channel, [await push(new)], free=0)
        assert market.stock["S"] == 7
        # Now the old call finally writes 10 over it, and answers "applied".
        late = await push(old)
        assert market.stock["S"] == 10
        pusher._step(channel, [late], free=0)
        # Taken as the channel's figure it would stay 10 for good; instead it is planned again.
        stop = asyncio.Event()
        running = asyncio.create_task(pusher.run(stop))
        try:
            await asyncio.wait_for(pusher.wait_idle(), IDLE_TIMEOUT_S)
        finally:
            stop.set()
            await asyncio.wait_for(running, IDLE_TIMEOUT_S)

    asyncio.run(scenario())
    assert market.stock["S"] == 7 == _expected(store, "ch")
