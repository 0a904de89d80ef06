"""retry_policy: what it retries, how long it waits, and that it gives up with the last error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.errors import (
    AuthError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    SkipRecordError,
    UncertainOutcomeError,
)
from connectors.http import make_client, retry_policy, send

pytestmark = pytest.mark.anyio


class Sleeps:
    """Records the waits tenacity asks for instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


class Flaky:
    """Raises the given errors one per call, then answers "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def test_retries_transient_failures_then_answers() -> None:
    sleeps = Sleeps()
    flaky = Flaky(RetryableError("HTTP 500"), RetryableError("HTTP 503"))
    assert await retry_policy(sleep=sleeps)(flaky) == "ok"
    assert flaky.calls == 3
    assert len(sleeps.waits) == 2


async def test_gives_up_after_the_attempts_and_reraises_the_last_error() -> None:
    sleeps = Sleeps()
    errors = [RetryableError(f"HTTP 503 #{n}") for n in range(3)]
    flaky = Flaky(*errors)
    with pytest.raises(RetryableError) as raised:
        await retry_policy(attempts=3, sleep=sleeps)(flaky)
    assert raised.value is errors[-1]
    assert flaky.calls == 3
    assert len(sleeps.waits) == 2


@pytest.mark.parametrize(
    "error",
    [
        AuthError("HTTP 401"),
        NotFoundError("HTTP 404"),
        PermanentError("HTTP 422", reason="title too long"),
        SkipRecordError("bad line"),
        ValueError("a bug"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_never_retries_what_will_fail_again(error: Exception) -> None:
    sleeps = Sleeps()
    flaky = Flaky(error)
    with pytest.raises(type(error)) as raised:
        await retry_policy(retry_uncertain=True, sleep=sleeps)(flaky)
    assert raised.value is error
    assert flaky.calls == 1
    assert sleeps.waits == []


async def test_retries_a_throttled_call() -> None:
    flaky = Flaky(RateLimitedError("HTTP 429"))
    assert await retry_policy(sleep=Sleeps())(flaky) == "ok"
    assert flaky.calls == 2


async def test_an_uncertain_outcome_is_not_resent_unless_the_call_is_idempotent() -> None:
    once = Flaky(UncertainOutcomeError("ReadTimeout"))
    with pytest.raises(UncertainOutcomeError):
        await retry_policy(sleep=Sleeps())(once)
    assert once.calls == 1

    idempotent = Flaky(UncertainOutcomeError("ReadTimeout"))
    assert await retry_policy(retry_uncertain=True, sleep=Sleeps())(idempotent) == "ok"
    assert idempotent.calls == 2


@pytest.mark.parametrize("retry_after", [7.0, 45.0])
async def test_never_waits_less_than_the_channels_retry_after(retry_after: float) -> None:
    sleeps = Sleeps()
    flaky = Flaky(
        RateLimitedError("HTTP 429", retry_after=retry_after),
        RetryableError("HTTP 503", retry_after=retry_after),
    )
    assert await retry_policy(base=0.5, cap=30.0, sleep=sleeps)(flaky) == "ok"
    assert len(sleeps.waits) == 2
    # Attempt n's backoff is at most 0.5 * 2**(n-1) <= 1 s here, so the Retry-After decides.
    assert sleeps.waits == [retry_after, retry_after]


async def test_a_retry_after_shorter_than_the_backoff_does_not_shorten_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Full jitter draws uniformly in [0, high]: pin the draw to the top of the window.
    monkeypatch.setattr("tenacity.wait.random.uniform", lambda low, high: high)
    sleeps = Sleeps()
    flaky = Flaky(*(RateLimitedError("HTTP 429", retry_after=0.1) for _ in range(4)))
    assert await retry_policy(base=1.0, cap=30.0, sleep=sleeps)(flaky) == "ok"
    assert sleeps.waits == [1.0, 2.0, 4.0, 8.0]


@settings(deadline=None, max_examples=100)
@given(
    base=st.floats(min_value=0.01, max_value=5.0),
    cap=st.floats(min_value=0.1, max_value=60.0),
    attempts=st.integers(min_value=2, max_value=10),
)
def test_backoff_waits_are_full_jitter_within_the_exponential_window(
    base: float, cap: float, attempts: int
) -> None:
    sleeps = Sleeps()
    flaky = Flaky(*(RetryableError("HTTP 500") for _ in range(attempts)))

    async def run() -> None:
        with pytest.raises(RetryableError):
            await retry_policy(attempts=attempts, base=base, cap=cap, sleep=sleeps)(flaky)

    asyncio.run(run())
    assert len(sleeps.waits) == attempts - 1
    for n, wait in enumerate(sleeps.waits, start=1):
        assert 0.0 <= wait <= min(cap, base * 2 ** (n - 1))


async def test_concurrent_calls_keep_their_own_attempt_counts() -> None:
    # Interleaved calls, each allowed 3 attempts: a counter shared between them would run out.
    flakies = [Flaky(RetryableError("a"), RetryableError("b")) for _ in range(5)]
    results: list[str] = await asyncio.gather(
        *(retry_policy(attempts=3, sleep=Sleeps())(flaky) for flaky in flakies)
    )
    assert results == ["ok"] * 5
    assert [flaky.calls for flaky in flakies] == [3] * 5


def test_refuses_fewer_than_one_attempt() -> None:
    with pytest.raises(ValueError, match="attempts"):
        retry_policy(attempts=0)


async def test_logs_each_retry_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="connectors.http")
    await retry_policy(sleep=Sleeps())(Flaky(RetryableError("HTTP 502", channel="ebay-uk")))
    assert "attempt 1 failed (ebay-uk: HTTP 502); retrying in" in caplog.text


def _serve(*statuses: int) -> tuple[httpx.MockTransport, Callable[[], int]]:
    answers = list(statuses)
    seen = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal seen
        seen += 1
        return httpx.Response(answers.pop(0), json={"ok": True})

    return httpx.MockTransport(handler), lambda: seen


async def test_the_documented_send_loop_retries_a_5xx_then_succeeds() -> None:
    transport, requests_seen = _serve(503, 502, 200)
    sleeps = Sleeps()
    async with make_client(base_url="https://shop.test", channel="s", transport=transport) as c:
        async for attempt in retry_policy(retry_uncertain=True, sleep=sleeps):
            with attempt:
                response = await send(
                    c, "GET", "/orders", channel="s", operation="getOrder", limiter=None
                )
    assert response.json() == {"ok": True}
    assert requests_seen() == 3
    assert len(sleeps.waits) == 2


async def test_the_documented_send_loop_stops_on_a_4xx() -> None:
    transport, requests_seen = _serve(422, 200)
    async with make_client(base_url="https://shop.test", channel="s", transport=transport) as c:
        with pytest.raises(PermanentError):
            async for attempt in retry_policy(sleep=Sleeps()):
                with attempt:
                    await send(c, "POST", "/x", channel="s", operation="op", limiter=None)
    assert requests_seen() == 1
