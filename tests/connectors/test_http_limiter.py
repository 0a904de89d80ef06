"""TokenBucket and RateLimiters, driven by a fake clock: no real waiting."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.http import RateLimiters, TokenBucket

pytestmark = pytest.mark.anyio


class FakeClock:
    """A monotonic clock that only moves when someone sleeps on it (or a test moves it)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


def make_bucket(rate: float, burst: float, clock: FakeClock) -> TokenBucket:
    return TokenBucket(rate, burst, clock=clock, sleep=clock.sleep)


async def test_a_fresh_bucket_grants_its_burst_at_once_then_paces_at_its_rate() -> None:
    clock = FakeClock()
    bucket = make_bucket(2.0, 3.0, clock)
    assert [await bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert await bucket.acquire() == pytest.approx(0.5)
    assert await bucket.acquire(2.0) == pytest.approx(1.0)
    assert clock.now == pytest.approx(1001.5)


async def test_tokens_saved_while_idle_never_exceed_the_burst() -> None:
    clock = FakeClock()
    bucket = make_bucket(1.0, 2.0, clock)
    await bucket.acquire(2.0)
    clock.now += 3600
    assert bucket.available == pytest.approx(2.0)
    assert await bucket.acquire(2.0) == 0.0
    assert await bucket.acquire() == pytest.approx(1.0)


async def test_waiters_are_served_first_come_first_served() -> None:
    clock = FakeClock()
    bucket = make_bucket(1.0, 5.0, clock)
    await bucket.acquire(5.0)
    served: list[str] = []

    async def take(name: str, tokens: float) -> None:
        await bucket.acquire(tokens)
        served.append(name)

    # The large request arrives first: the small ones behind it must not overtake it, even though
    # a single token would be ready long before four are.
    tasks = [asyncio.create_task(take(name, n)) for name, n in (("big", 4), ("a", 1), ("b", 1))]
    await asyncio.gather(*tasks)
    assert served == ["big", "a", "b"]
    assert clock.now == pytest.approx(1006.0)


async def test_a_background_request_never_makes_a_foreground_one_wait_behind_it() -> None:
    # Shopify's one cost bucket: a reconcile's listing page (800 points) is waiting for room
    # when a stock push (10 points) comes. First come first served, the push would wait ~8 s.
    clock = FakeClock()
    bucket = make_bucket(100.0, 1000.0, clock)
    await bucket.acquire(950.0)
    served: list[tuple[str, float]] = []

    async def take(name: str, tokens: float, reserve: float = 0.0) -> None:
        waited = await bucket.acquire(tokens, reserve=reserve)
        served.append((name, waited))

    page = asyncio.create_task(take("page", 800.0, reserve=100.0))
    await asyncio.sleep(0)  # the page is waiting now
    push = asyncio.create_task(take("push", 10.0))
    await asyncio.gather(page, push)
    assert served[0] == ("push", 0.0)
    assert served[1][0] == "page"
    # The page went only when taking its 800 left the reserve behind.
    assert bucket.available == pytest.approx(100.0)


async def test_a_background_request_waits_while_a_foreground_one_waits_for_its_tokens() -> None:
    clock = FakeClock()
    bucket = make_bucket(10.0, 100.0, clock)
    await bucket.acquire(100.0)
    served: list[str] = []

    async def take(name: str, tokens: float, reserve: float = 0.0) -> None:
        await bucket.acquire(tokens, reserve=reserve)
        served.append(name)

    # The push queues first, for more tokens than the page: the page must not take them first.
    push = asyncio.create_task(take("push", 60.0))
    await asyncio.sleep(0)
    page = asyncio.create_task(take("page", 20.0, reserve=10.0))
    await asyncio.gather(push, page)
    assert served == ["push", "page"]


async def test_penalize_makes_everyone_wait_for_the_retry_after() -> None:
    clock = FakeClock()
    bucket = make_bucket(10.0, 10.0, clock)
    bucket.penalize(30.0)
    assert bucket.available == 0.0
    start = clock.now
    grants: list[float] = []

    async def take() -> None:
        await bucket.acquire()
        grants.append(clock.now)

    await asyncio.gather(*(take() for _ in range(3)))
    assert min(grants) >= start + 30.0
    # The channel's bucket restored during the wait, so ours did too: no extra delay after it.
    assert max(grants) == pytest.approx(start + 30.0)


async def test_penalize_while_a_waiter_sleeps_pushes_that_waiter_back() -> None:
    clock = FakeClock()
    bucket = make_bucket(1.0, 1.0, clock)
    await bucket.acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)  # the waiter starts its 1 s sleep (the fake clock has already moved)
    bucket.penalize(20.0)
    waited = await waiter
    assert waited >= 20.0


async def test_penalize_empties_the_bucket_even_without_a_retry_after() -> None:
    clock = FakeClock()
    bucket = make_bucket(0.5, 20.0, clock)
    bucket.penalize(0.0)  # Amazon: a 429 and no Retry-After, so its bucket is empty
    assert await bucket.acquire() == pytest.approx(2.0)


async def test_a_shorter_penalty_does_not_cut_a_longer_one() -> None:
    clock = FakeClock()
    bucket = make_bucket(100.0, 100.0, clock)
    bucket.penalize(10.0)
    bucket.penalize(1.0)
    assert await bucket.acquire() == pytest.approx(10.0)


async def test_update_takes_the_channels_live_figures() -> None:
    clock = FakeClock()
    bucket = make_bucket(50.0, 1000.0, clock)
    # Shopify's throttleStatus: maximumAvailable 2000, currentlyAvailable 100, restoreRate 100.
    bucket.update(rate=100.0, burst=2000.0, available=100.0)
    assert (bucket.rate, bucket.burst, bucket.available) == (100.0, 2000.0, 100.0)
    assert await bucket.acquire(300.0) == pytest.approx(2.0)


async def test_update_clamps_available_to_the_new_burst() -> None:
    clock = FakeClock()
    bucket = make_bucket(1.0, 10.0, clock)
    bucket.update(burst=4.0)
    assert bucket.available == 4.0
    bucket.update(available=-3.0)
    assert bucket.available == 0.0


def test_update_refuses_nonsense() -> None:
    bucket = TokenBucket(1.0, 1.0)
    with pytest.raises(ValueError, match="rate"):
        bucket.update(rate=0.0)
    with pytest.raises(ValueError, match="burst"):
        bucket.update(burst=float("inf"))
    with pytest.raises(ValueError, match="available"):
        bucket.update(available=float("nan"))


@pytest.mark.parametrize(
    ("rate", "burst"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0), (1.0, float("nan"))]
)
def test_a_bucket_needs_a_positive_rate_and_burst(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(rate, burst)


@pytest.mark.parametrize("tokens", [0.0, -1.0, 5.5])
async def test_acquire_refuses_what_the_bucket_could_never_hold(tokens: float) -> None:
    bucket = TokenBucket(1.0, 5.0)
    with pytest.raises(ValueError):
        await bucket.acquire(tokens)


async def test_a_waiter_left_behind_by_a_shrunken_bucket_is_told_so() -> None:
    clock = FakeClock()
    bucket = make_bucket(1.0, 5.0, clock)
    await bucket.acquire(5.0)
    waiter = asyncio.create_task(bucket.acquire(4.0))
    await asyncio.sleep(0)
    bucket.update(burst=2.0)
    with pytest.raises(ValueError, match=r"bucket of 2\.0"):
        await waiter


async def test_a_cancelled_waiter_takes_nothing_and_blocks_nobody() -> None:
    clock = FakeClock()
    forever = asyncio.Event()

    async def sleep_forever(seconds: float) -> None:
        await forever.wait()

    bucket = TokenBucket(1.0, 1.0, clock=clock, sleep=sleep_forever)
    await bucket.acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    clock.now += 1.0
    assert await bucket.acquire() == 0.0


def test_rate_limiters_hand_out_one_bucket_per_channel_and_operation() -> None:
    limiters = RateLimiters({"getOrder": (0.5, 30.0), "searchOrders": (0.0056, 20.0)})
    bucket = limiters.bucket("amazon-us", "getOrder")
    assert limiters.bucket("amazon-us", "getOrder") is bucket
    assert (bucket.rate, bucket.burst) == (0.5, 30.0)
    assert limiters.bucket("amazon-eu", "getOrder") is not bucket
    assert limiters.bucket("amazon-us", "searchOrders") is not bucket


def test_rate_limiters_use_the_default_for_unknown_operations() -> None:
    limiters = RateLimiters({"getOrder": (0.5, 30.0)}, default=(1.0, 5.0))
    bucket = limiters.bucket("amazon-us", "createDestination")
    assert (bucket.rate, bucket.burst) == (1.0, 5.0)
    assert limiters.bucket("amazon-us", "createDestination") is bucket


def test_rate_limiters_without_a_default_refuse_unknown_operations() -> None:
    limiters = RateLimiters({"getOrder": (0.5, 30.0)})
    with pytest.raises(KeyError, match="amazon-us: no rate limit for operation 'getOrders'"):
        limiters.bucket("amazon-us", "getOrders")


def test_rate_limiters_check_their_table_at_construction() -> None:
    with pytest.raises(ValueError, match="getOrder rate"):
        RateLimiters({"getOrder": (0.0, 30.0)})
    with pytest.raises(ValueError, match="default burst"):
        RateLimiters({}, default=(1.0, -1.0))


async def test_rate_limiters_pass_their_clock_to_the_buckets() -> None:
    clock = FakeClock()
    limiters = RateLimiters({"op": (1.0, 1.0)}, clock=clock, sleep=clock.sleep)
    bucket = limiters.bucket("ch", "op")
    await bucket.acquire()
    assert await bucket.acquire() == pytest.approx(1.0)
    assert clock.sleeps == [pytest.approx(1.0)]


def _grants_within_rate(
    grants: list[tuple[float, float]], rate: float, burst: float
) -> tuple[float, float, float] | None:
    """The first window [t_i, t_j] holding more than burst + rate * (t_j - t_i) tokens, if any."""
    grants = sorted(grants)
    for i, (start, _) in enumerate(grants):
        taken = 0.0
        for end, tokens in grants[i:]:
            taken += tokens
            if taken > burst + rate * (end - start) + 1e-6 * max(1.0, burst):
                return start, end, taken
    return None


@settings(deadline=None, max_examples=150)
@given(
    rate=st.floats(min_value=0.01, max_value=200.0),
    burst=st.floats(min_value=1.0, max_value=100.0),
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=5.0),  # gap before the next caller arrives
            st.floats(min_value=0.001, max_value=1.0),  # its size, as a fraction of the burst
        ),
        min_size=1,
        max_size=40,
    ),
    concurrent=st.booleans(),
)
def test_no_window_ever_gets_more_than_burst_plus_rate_times_its_length(
    rate: float, burst: float, steps: list[tuple[float, float]], concurrent: bool
) -> None:
    clock = FakeClock()
    bucket = make_bucket(rate, burst, clock)
    grants: list[tuple[float, float]] = []

    async def take(tokens: float) -> None:
        # acquire() reads the clock before its first await, so this is its own start time, and
        # start + waited is the clock reading at which the tokens were granted.
        started = clock()
        waited = await bucket.acquire(tokens)
        assert waited >= 0.0
        grants.append((started + waited, tokens))

    async def scenario() -> None:
        tasks = []
        for gap, fraction in steps:
            clock.now += gap
            if concurrent:
                tasks.append(asyncio.create_task(take(fraction * burst)))
                await asyncio.sleep(0)
            else:
                await take(fraction * burst)
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert len(grants) == len(steps)
    assert _grants_within_rate(grants, rate, burst) is None


async def test_a_waiter_goes_as_soon_as_the_channels_live_figures_say_there_is_room() -> None:
    """Shopify reports its bucket in every answer: a query waiting out our estimate (here, a
    sleep that would never end) goes the moment an answer says the shop has room."""

    async def never(_seconds: float) -> None:
        await asyncio.Event().wait()

    bucket = TokenBucket(rate=1.0, burst=1000.0, sleep=never)
    await bucket.acquire(1000.0)
    waiting = asyncio.create_task(bucket.acquire(800.0))
    await asyncio.sleep(0)
    assert not waiting.done()
    bucket.update(available=2000.0, burst=2000.0)
    await asyncio.wait_for(waiting, 1.0)
    assert bucket.available == pytest.approx(1200.0, abs=1.0)
