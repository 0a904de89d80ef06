"""The status page in a real headless Chromium, driven through the DevTools protocol.

A real daemon (a subprocess, on a SQLite file) serves two reference sandbox channels; the seller
sets stock, buyers order, and one listing the channel does not have leaves a dead job. The test
opens `GET /` with the token in the URL's fragment, waits until the page shows data, and checks
every figure it reads from the DOM against `/api/status`, `/api/latency`, `/api/orders` and
`/api/jobs`; then that the page refreshes itself (a new order appears without a reload), and that
a tab without a token asks for one and refuses a wrong one.

Chromium is Debian's `chromium` package (`make test` and `.ci/run` install it when missing); no
browser is downloaded. Without it the test skips, except under CI=true or
CHANNEL_SYNC_REQUIRE_CHROMIUM=1 (.ci/run) where it fails.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from sync.db import sqlite_url
from tests.sandbox.test_reference_daemon import bind_listings
from tests.support.daemon import Daemon, DaemonConfig, wait_for
from tests.support.reference import ReferenceSandbox

ADMIN_TOKEN = "status-page-browser-token-93ab"
START_S = 30.0  # a daemon, a sandbox or a browser starting on a busy two-core machine
SETTLE_S = 30.0

# What the page shows per channel, as the script reads it from the DOM: every cell by field.
READ_PAGE = """(() => {
  if (!document.body || !document.getElementById("board")) return "null";  // still loading
  const shows = (id) => document.getElementById(id).getClientRects().length > 0;
  const rows = (id, key) => [...document.querySelectorAll(`#${id} tbody tr[data-${key}]`)]
    .map((tr) => Object.fromEntries(
      [...tr.querySelectorAll("td[data-field]")].map((td) => [td.dataset.field, td.textContent])));
  return JSON.stringify({
    href: location.href,
    refreshes: Number(document.body.dataset.refreshes || 0),
    boardShown: shows("board"),
    formShown: shows("token-form"),
    error: shows("error") ? document.getElementById("error").textContent : "",
    summary: document.getElementById("summary").textContent,
    channels: rows("channels", "channel"),
    orders: rows("orders", "order-id"),
    deadJobs: rows("dead-jobs", "job-id"),
    lines: [...document.querySelectorAll("#latency-chart polyline")].map((line) => ({
      channel: line.dataset.channel,
      buckets: Number(line.dataset.buckets),
      points: line.getAttribute("points"),
    })),
    dots: document.querySelectorAll("#latency-chart circle").length,
    tokenInPage: document.documentElement.outerHTML.includes(%(token)s),
    tokenStored: sessionStorage.getItem("channel-sync-admin-token") === %(token)s,
  });
})()"""


def chromium_binary() -> str:
    """Debian's chromium; skip without it (fail under CI=true or CHANNEL_SYNC_REQUIRE_CHROMIUM,
    as .ci/run sets, where `make browser` installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "no chromium binary on PATH (Debian: apt-get install chromium; `make test` does)"
        if os.environ.get("CI", "").strip().lower() == "true" or os.environ.get(
            "CHANNEL_SYNC_REQUIRE_CHROMIUM"
        ):
            pytest.fail(f"{reason}; under CI (.ci/run) this is an error, not a skip")
        pytest.skip(reason)
    return found


class Browser:
    """A headless Chromium process and one DevTools websocket per page, on loopback only."""

    def __init__(self, binary: str, profile: Path) -> None:
        self.profile = profile
        profile.mkdir(parents=True)
        args = [
            binary,
            "--headless",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--disable-gpu",
            "--window-size=1280,900",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            # Nothing may leave 127.0.0.1: no update, sync, safe-browsing or metrics traffic, and
            # no host name resolves (the page is served from an address).
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--disable-features=Translate,OptimizationHints,MediaRouter",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root (CI)
        self.log = (profile.parent / "chromium.log").open("wb")
        self.proc = subprocess.Popen(
            args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.loop = asyncio.new_event_loop()
        self.session: aiohttp.ClientSession | None = None
        self.port = wait_for(self._port, timeout=START_S, what="Chromium's DevTools port")

    def _port(self) -> int | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"chromium exited with {self.proc.returncode}: {self.output()}")
        active = self.profile / "DevToolsActivePort"
        lines = active.read_text().split() if active.exists() else []
        return int(lines[0]) if lines else None

    def output(self) -> str:
        """What Chromium printed (its log file)."""
        return (self.profile.parent / "chromium.log").read_text(errors="replace")[-3000:]

    def open(self, url: str) -> Page:
        """A new tab (its own sessionStorage) navigated to `url`, fragment included."""
        target = httpx.put(
            f"http://127.0.0.1:{self.port}/json/new?about:blank", timeout=10, trust_env=False
        )
        assert target.status_code == 200, target.text
        page = Page(self, target.json()["webSocketDebuggerUrl"])
        navigated = self.loop.run_until_complete(page.call("Page.navigate", {"url": url}))
        assert "errorText" not in navigated, navigated
        return page

    def close(self) -> None:
        """End the browser (its whole process group: it is ours), then the event loop."""
        if self.session is not None:
            self.loop.run_until_complete(self.session.close())
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
        self.loop.close()


class Page:
    """One tab: evaluate JavaScript in it through `Runtime.evaluate`."""

    def __init__(self, browser: Browser, ws_url: str) -> None:
        self.browser = browser
        self.ws_url = ws_url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.next_id = 0

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one DevTools command; answer its result."""
        if self.ws is None:
            if self.browser.session is None:
                self.browser.session = aiohttp.ClientSession(trust_env=False)
            self.ws = await self.browser.session.ws_connect(self.ws_url, max_msg_size=0)
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        async with asyncio.timeout(20):
            while True:  # events in between are not ours
                message = await self.ws.receive_json()
                if message.get("id") == self.next_id:
                    if "error" in message:
                        raise AssertionError(f"{method}: {message['error']}")
                    answer: dict[str, Any] = message["result"]
                    return answer

    def evaluate(self, expression: str) -> Any:
        """The value of `expression` in the page (JSON-like values only)."""
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        result = self.browser.loop.run_until_complete(self.call("Runtime.evaluate", params))
        if "exceptionDetails" in result:
            raise AssertionError(f"the page threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        """A PNG of the tab, kept beside the test's files for whoever debugs a failure."""
        shot = self.browser.loop.run_until_complete(self.call("Page.captureScreenshot", {}))
        path.write_bytes(base64.b64decode(shot["data"]))

    def read(self) -> dict[str, Any]:
        """Everything the status page shows, as the DOM holds it (empty while it loads)."""
        shown: dict[str, Any] | None = json.loads(
            self.evaluate(READ_PAGE % {"token": json.dumps(ADMIN_TOKEN)})
        )
        return shown or {}


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    started = Browser(chromium_binary(), tmp_path / "chromium-profile")
    try:
        yield started
    finally:
        started.close()


def number(text: str) -> float | None:
    """The number in a cell such as `12`, `0.4 s` or `350 ms` (durations in seconds)."""
    match = re.fullmatch(r"(-?[\d.]+)( s| ms)?", text.strip())
    return float(match[1]) / (1000 if match[2] == " ms" else 1) if match else None


def channels_of(api: httpx.Client) -> dict[str, dict[str, Any]]:
    """/api/status's channels by name."""
    return {c["name"]: c for c in api.get("/api/status").json()["channels"]}


def mismatches(shown: dict[str, Any], api: httpx.Client) -> list[str]:
    """Where the page differs from what the API says now (lag: within one refresh and poll)."""
    status = api.get("/api/status").json()
    latency = api.get("/api/latency").json()["channels"]
    orders = api.get("/api/orders", params={"limit": 10}).json()["items"]
    dead = api.get("/api/jobs", params={"state": "dead", "limit": 10}).json()["items"]
    problems = []
    rows = {row["name"]: row for row in shown["channels"]}
    if set(rows) != {ch["name"] for ch in status["channels"]}:
        problems.append(f"channels {sorted(rows)} vs {status['channels']}")
    for ch in status["channels"]:
        row = rows.get(ch["name"])
        if row is None:
            continue
        expected = {
            "kind": ch["kind"],
            "state": ch["state"],
            "orders_today": str(ch["orders_today"]),
            "jobs_pending": str(ch["jobs_pending"]),
            "jobs_dead": str(ch["jobs_dead"]),
            "last_error": ch["last_error"] or ch["last_dead_reason"] or "",
            "pushes": str(latency.get(ch["name"], {}).get("count", 0)),
        }
        got = {key: row[key] for key in expected}
        if got != expected:
            problems.append(f"{ch['name']}: page {got} vs api {expected}")
        lag = number(row["lag_s"])
        if ch["lag_s"] is None or lag is None or abs(lag - ch["lag_s"]) > 3.0:
            problems.append(f"{ch['name']}: lag {row['lag_s']} vs {ch['lag_s']}")
        if ch["name"] in latency and latency[ch["name"]]["count"]:
            p50 = latency[ch["name"]]["p50_s"]
            shown_p50 = number(row["p50"])
            if shown_p50 is None or abs(shown_p50 - p50) > max(0.001, p50 * 0.06):
                problems.append(f"{ch['name']}: p50 {row['p50']} vs {p50}")
    page_orders = [(int(o["id"]), o["channel"], o["status"]) for o in shown["orders"]]
    api_orders = [(o["id"], o["channel"], o["status"]) for o in orders]
    if page_orders != api_orders:
        problems.append(f"orders {page_orders} vs {api_orders}")
    page_dead = [(int(j["id"]), j["channel"], j["reason"]) for j in shown["deadJobs"]]
    api_dead = [(j["id"], j["channel"], j["last_error"]) for j in dead]
    if page_dead != api_dead:
        problems.append(f"dead jobs {page_dead} vs {api_dead}")
    return problems


def page_matches_api(page: Page, api: httpx.Client, timeout: float = SETTLE_S) -> dict[str, Any]:
    """Poll until the page shows what the API says (the page refreshes every 2 s)."""
    last: list[str] = []

    def check() -> dict[str, Any] | None:
        shown = page.read()
        if not shown.get("boardShown"):
            last[:] = [f"board not shown: {shown or page.evaluate('document.URL')}"]
            return None
        last[:] = mismatches(shown, api)
        return None if last else shown

    try:
        return wait_for(check, timeout=timeout, what="the page to show what the API says")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {last}") from None


def test_the_status_page_shows_what_the_api_says_and_keeps_up(
    tmp_path: Path, browser: Browser
) -> None:
    with ReferenceSandbox(tmp_path / "sandbox", ["shop:cas", "plain:batch=2"]) as sandbox:
        sandbox.control("shop", "POST", "/stock", {"A": 0, "B": 0})
        sandbox.control("plain", "POST", "/stock", {"A": 0})
        fast_poll = "[schedule]\npoll_interval_s = 0.5\n"
        config = DaemonConfig(
            root=tmp_path / "cfg",
            database_url=sqlite_url(tmp_path / "store.db"),
            channels={
                "shop": sandbox.channel_file("shop", extra=fast_poll),
                "plain": sandbox.channel_file("plain", extra=fast_poll),
            },
        )
        config.write()
        daemon = Daemon(config, {config.admin_token_env: ADMIN_TOKEN, **sandbox.env}).start()
        try:
            daemon.wait_healthy(timeout=START_S)
            assert config.database_url is not None
            # plain's B is a listing the channel does not have: its push is refused, a dead job.
            bind_listings(
                config.database_url,
                {"shop": {"A": "L-A", "B": "L-B"}, "plain": {"A": "L-A", "B": "L-GHOST"}},
            )
            with httpx.Client(
                base_url=config.admin_url,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=10,
                trust_env=False,
            ) as api:
                for sku, units in (("A", 7), ("B", 3)):
                    answer = api.put(
                        f"/api/stock/{sku}", json={"location": "default", "on_hand": units}
                    )
                    assert answer.status_code == 200, answer.text
                wait_for(
                    lambda: sandbox.control("shop", "GET", "/inventory") == {"A": 7, "B": 3},
                    timeout=SETTLE_S,
                    what="the shop to show the stock",
                )
                for _ in range(2):
                    sandbox.control(
                        "shop", "POST", "/orders", {"lines": [{"sku": "A", "quantity": 1}]}
                    )

                seen: list[object] = []

                def settled() -> bool:
                    channels = channels_of(api)
                    plain = sandbox.control("plain", "GET", "/inventory")
                    seen[:] = [channels, plain]
                    return (
                        channels["shop"]["orders_today"] == 2
                        and channels["plain"]["jobs_dead"] >= 1
                        and all(c["jobs_pending"] == 0 for c in channels.values())
                        and plain == {"A": 5}
                    )

                try:
                    wait_for(settled, timeout=SETTLE_S, what="orders in, pushes out, a dead job")
                except AssertionError as exc:
                    raise AssertionError(f"{exc}; last seen {seen}") from None

                # The token travels in the fragment, which the browser never sends to a server.
                page = browser.open(f"{config.admin_url}/#token={ADMIN_TOKEN}")
                shown = page_matches_api(page, api)
                page.screenshot(tmp_path / "status-page.png")
                assert shown["href"] == f"{config.admin_url}/"  # the fragment is gone
                assert shown["tokenStored"] and not shown["tokenInPage"]
                assert "database sqlite" in shown["summary"]
                assert [o["channel"] for o in shown["orders"]] == ["shop", "shop"]
                assert {j["reason"] for j in shown["deadJobs"]} == {"no such listing"}
                assert {row["name"]: row["state"] for row in shown["channels"]} == {
                    "plain": "degraded",  # a dead job
                    "shop": "ok",
                }
                # Every channel that applied a push has a line in the chart.
                lines = {line["channel"]: line for line in shown["lines"]}
                assert set(lines) == {"plain", "shop"}
                assert lines["shop"]["buckets"] >= 1 and lines["shop"]["points"]
                assert shown["dots"] == sum(line["buckets"] for line in lines.values())
                assert not shown["formShown"]  # the board replaces the token form
                rows = {row["name"]: row for row in shown["channels"]}
                assert int(rows["shop"]["pushes"]) >= 2  # A and B at least

                # It keeps up on its own: a new order shows without a reload.
                before = page.read()["refreshes"]
                sandbox.control("shop", "POST", "/orders", {"lines": [{"sku": "B", "quantity": 1}]})
                wait_for(
                    lambda: channels_of(api)["shop"]["orders_today"] == 3,
                    timeout=SETTLE_S,
                    what="the third order to be polled in",
                )
                shown = page_matches_api(page, api)
                assert len(shown["orders"]) == 3
                assert shown["refreshes"] > before

                # A tab without the token asks for it, and a wrong one is refused.
                fresh = browser.open(f"{config.admin_url}/")
                wait_for(
                    lambda: fresh.read().get("formShown"), timeout=START_S, what="the token form"
                )
                assert fresh.read()["channels"] == []
                submit = """(() => {
                  document.getElementById("token").value = %s;
                  document.getElementById("token-form").requestSubmit();
                })()"""
                fresh.evaluate(submit % json.dumps("not-the-token"))
                refused = wait_for(
                    lambda: (shown := fresh.read()).get("error") and shown,
                    timeout=START_S,
                    what="the wrong token to be refused",
                )
                assert refused["formShown"] and "refused" in refused["error"]
                fresh.evaluate(submit % json.dumps(ADMIN_TOKEN))
                page_matches_api(fresh, api)
            assert daemon.stop(signal.SIGTERM) == 0
        finally:
            daemon.kill()
        output = daemon.output()
        assert ADMIN_TOKEN not in output
        assert "not-the-token" not in output
