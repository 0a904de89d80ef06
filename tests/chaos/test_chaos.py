"""The chaos run's short form (issue 9 §1), inside `make test`: the same run as
`python -m tests.chaos.run` (`make chaos`: 10,000 orders, 20 kills), with few orders and kills.

The store is a private PostgreSQL cluster, crashed and restarted once under the daemon; without
one (no server binaries, or root without a `postgres` user) the test skips saying why, and
fails instead under CI=true or CHANNEL_SYNC_REQUIRE_PG=1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.cluster import require_private_cluster
from tests.chaos.run import JSON_KEYS, ChaosPlan, report, run_chaos

ORDERS = 60
KILLS = 3
RATE = 3.0  # orders per second: 20 s of buying, the kills spread over it


@pytest.mark.chaos
# About 70 s as a rule; a throttle injected on Amazon's searchOrders empties its bucket, and its
# next call may then wait out Amazon's 3-minute restore before the final sync can answer.
@pytest.mark.timeout(600)
def test_the_short_chaos_run_keeps_every_invariant(tmp_path: Path) -> None:
    require_private_cluster("for the chaos run")
    lines: list[str] = []
    plan = ChaosPlan(orders=ORDERS, kills=KILLS, rate=RATE, seed=9, state_dir=tmp_path / "run")
    result = run_chaos(plan, say=lines.append)
    report(result, say=lines.append)
    print("\n".join(lines))
    verdict = result.verdict
    assert all(key in verdict.counts() for key in JSON_KEYS)
    assert verdict.orders >= ORDERS // 2, "\n".join(lines)
    assert verdict.failures(min_kills=KILLS) == [], "\n".join(lines)
    assert verdict.pg_restarts == 1
