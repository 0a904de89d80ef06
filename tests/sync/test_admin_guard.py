"""The admin API slows token guessing: 10 bad tokens within a minute from one address, then 429
(with Retry-After) for everything but the public paths until the lock lapses, whatever token is
sent; other addresses are unaffected; a frozen clock moves the minute (no sleeps)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from sync.db import Database
from sync.http.admin import AdminContext, create_admin_app
from sync.http.admin_guard import BadTokenLimiter, client_key, retry_after_header
from sync.metrics import Metrics

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

TOKEN = "admin-token-for-guard-tests"
GOOD = {"Authorization": f"Bearer {TOKEN}"}
BAD = {"Authorization": "Bearer guess"}


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app_ctx(tmp_path: Path, clock: Clock) -> Iterator[AdminContext]:
    # Never opened: the routes these tests reach (/metrics, /healthz) do not read the store.
    database = Database(f"sqlite:///{tmp_path / 'guard.db'}")
    yield AdminContext(
        db=database,
        metrics=Metrics("guard"),
        token=lambda: TOKEN,
        enabled_channels=set(),
        schema_problem=lambda: None,
        bad_tokens=BadTokenLimiter(clock=clock),
    )
    database.dispose()


def _client(ctx: AdminContext, host: str) -> TestClient:
    return TestClient(create_admin_app(ctx), client=(host, 50000))


def test_ten_bad_tokens_then_429_for_everything_until_the_minute_passes(
    app_ctx: AdminContext, clock: Clock
) -> None:
    attacker = _client(app_ctx, "10.0.0.7")
    for _ in range(10):
        clock.now += 1
        assert attacker.get("/api/status", headers=BAD).status_code == 401
    locked = attacker.get("/api/status", headers=GOOD)  # the right token does not unlock it
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == "60"
    assert locked.json()["error"] == "too_many_requests"
    assert attacker.get("/metrics", headers=BAD).status_code == 429  # and is not counted
    assert attacker.get("/healthz").status_code == 200  # liveness stays open
    clock.now += 59.5
    answer = attacker.get("/readyz", headers=GOOD)
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "1")
    clock.now += 0.5
    scrape = attacker.get("/metrics", headers=GOOD)
    assert scrape.status_code == 200
    # The operator's alerting sees it: 10 bad tokens, one lockout, 3 requests refused while locked.
    assert 'channel_sync_admin_auth_total{outcome="bad_token"} 10.0' in scrape.text
    assert 'channel_sync_admin_auth_total{outcome="lockout"} 1.0' in scrape.text
    assert 'channel_sync_admin_auth_total{outcome="locked_out"} 3.0' in scrape.text
    assert attacker.get("/api/status", headers=BAD).status_code == 401  # a fresh count


def test_another_address_is_unaffected_and_successes_reset_nobody(
    app_ctx: AdminContext, clock: Clock
) -> None:
    attacker, operator = _client(app_ctx, "10.0.0.7"), _client(app_ctx, "10.0.0.8")
    for _ in range(9):
        assert attacker.get("/api/status", headers=BAD).status_code == 401
        assert operator.get("/metrics", headers=GOOD).status_code == 200
    assert attacker.get("/api/status", headers=BAD).status_code == 401  # the 10th
    assert attacker.get("/api/status", headers=GOOD).status_code == 429
    assert operator.get("/metrics", headers=GOOD).status_code == 200
    assert operator.get("/api/status", headers=BAD).status_code == 401  # its own count: 1


def test_failures_older_than_the_window_do_not_count(app_ctx: AdminContext, clock: Clock) -> None:
    client = _client(app_ctx, "10.0.0.9")
    for _ in range(30):  # one bad token every 7 s: never 10 within a minute
        clock.now += 7
        assert client.get("/api/status", headers=BAD).status_code == 401
    assert client.get("/metrics", headers=GOOD).status_code == 200


def test_ipv6_neighbours_share_a_slash_64_and_mapped_ipv4_is_ipv4() -> None:
    assert client_key("2001:db8:1:2::5") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::5") != client_key("2001:db8:1:3::5")
    assert client_key("::ffff:10.0.0.7") == "10.0.0.7"
    assert client_key(None) == "unknown"


def test_the_book_of_addresses_is_bounded(clock: Clock) -> None:
    limiter = BadTokenLimiter(max_addresses=100, clock=clock)
    for n in range(10_000):
        limiter.record_failure(f"10.1.{n // 256}.{n % 256}")
    assert len(limiter) == 100
    for _ in range(10):
        limiter.record_failure("10.9.9.9")
    assert limiter.retry_after("10.9.9.9") == 60.0
    assert limiter.retry_after("10.1.0.0") is None  # long evicted: no lock, no count


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert [retry_after_header(s) for s in (0.01, 1.0, 1.2, 59.9)] == ["1", "1", "2", "60"]
