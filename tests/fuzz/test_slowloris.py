"""Slow clients against the webhook app under real uvicorn on loopback (issue 9 §2).

The app is served as sync/service.py serves it (`bind`, a `uvicorn.Config` with the same options,
h11), in a thread of this process, on a real SQLite store. 100 connections trickle their
requests a byte at a time (half stall in the headers, half in a declared body), while valid
signed Shopify deliveries are sent one after another: every delivery must be stored, and the
99th percentile of time-to-200 must stay under 1 s. What the server does with the trickling
connections (uvicorn's h11 server has no header or body read timeout) is printed, and the
missing timeout is an xfail that turns into a failure once a timeout exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from connectors.shopify.webhook_handler import ShopifyWebhookHandler
from sync.channels import register_channels
from sync.db import Database
from sync.http.webhook_receiver import create_receiver
from sync.http.webhooks import create_webhook_app
from sync.models import WebhookDelivery
from sync.service import Listener, bind
from tests.support.daemon import free_port, wait_for
from tests.sync.test_webhook_receiver import SECRET, SHOP, headers, order_payload

SLOW_CLIENTS = 100
RUN_S = 8.0
TRICKLE_EVERY_S = 0.5
P99_LIMIT_S = 1.0


@pytest.fixture
def server(database: Database) -> Iterator[tuple[uvicorn.Server, int]]:
    with database.session() as session:
        channel_id = register_channels(session, {"shop": ("shopify", True)})["shop"]
    app = create_webhook_app(
        {
            "shop": create_receiver(
                database,
                channel="shop",
                channel_id=channel_id,
                handler=ShopifyWebhookHandler([SECRET], shop_domain=SHOP),
            )
        }
    )
    port = free_port()
    sock = bind(Listener("webhooks", "127.0.0.1", port))
    # The options sync/service.py gives the daemon's listeners.
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", server_header=False
    )
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: served.started, timeout=10, what="uvicorn to start")
    try:
        yield served, port
    finally:
        served.should_exit = True
        thread.join(timeout=10)
        sock.close()


async def _trickle(port: int, index: int, stop: asyncio.Event, sent: list[int]) -> None:
    """One slowloris client: a request that never completes, a byte every TRICKLE_EVERY_S."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    if index % 2:
        # Headers complete, the declared body never arrives.
        head = (
            b"POST /webhooks/shop HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n"
        )
        writer.write(head)
        rest = b"{" + b" " * 99_999
    else:
        rest = b"POST /webhooks/shop HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: a\r\n" * 10_000
    try:
        for byte in rest:
            if stop.is_set():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            sent[index] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TRICKLE_EVERY_S)
    except ConnectionError:
        sent[index] = -1  # the server closed it: counted below
    finally:
        writer.close()


async def _deliveries(port: int, stop: asyncio.Event) -> list[float]:
    """Valid signed deliveries, one after another, until RUN_S has passed: their times to 200."""
    latencies: list[float] = []
    ends = time.monotonic() + RUN_S
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        n = 0
        while time.monotonic() < ends:
            n += 1
            body = json.dumps(order_payload(100_000 + n)).encode()
            sent = headers(body, "orders/create", event_id=f"ev-{n}", webhook_id=f"wh-{n}")
            started = time.monotonic()
            answer = await client.post("/webhooks/shop", content=body, headers=sent)
            latencies.append(time.monotonic() - started)
            assert answer.status_code == 200, answer.text
            await asyncio.sleep(0.02)  # about 40 deliveries a second, not a load test
    stop.set()
    return latencies


async def _run(port: int) -> tuple[list[float], list[int]]:
    stop = asyncio.Event()
    sent = [0] * SLOW_CLIENTS
    slow = [asyncio.create_task(_trickle(port, i, stop, sent)) for i in range(SLOW_CLIENTS)]
    await asyncio.sleep(0.5)  # every slow connection open before the deliveries start
    latencies = await _deliveries(port, stop)
    await asyncio.gather(*slow)
    return latencies, sent


def test_trickling_clients_do_not_delay_valid_deliveries(
    server: tuple[uvicorn.Server, int], database: Database
) -> None:
    served, port = server
    latencies, sent = asyncio.run(_run(port))
    with database.read_session() as session:
        stored = session.scalar(select(func.count()).select_from(WebhookDelivery))
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    closed_by_server = sum(1 for count in sent if count < 0)
    print(
        json.dumps(
            {
                "deliveries": len(latencies),
                "stored": stored,
                "p50_s": round(statistics.median(latencies), 4),
                "p99_s": round(p99, 4),
                "max_s": round(ordered[-1], 4),
                "slow_clients": SLOW_CLIENTS,
                "slow_bytes_sent": sum(max(count, 0) for count in sent),
                "slow_closed_by_server": closed_by_server,
            }
        )
    )
    assert stored == len(latencies)
    assert p99 < P99_LIMIT_S, f"p99 time-to-200 {p99:.3f} s with {SLOW_CLIENTS} slow clients"
    assert served.started  # still serving


@pytest.mark.xfail(
    strict=True,
    reason="uvicorn's h11 server has no read timeout before a request is complete: a stalled "
    "request holds its connection for ever (timeout_keep_alive applies only between requests). "
    "Fix: a header/body read timeout (see the issue 9 report); then drop this mark.",
)
def test_a_stalled_request_is_closed_by_the_server(server: tuple[uvicorn.Server, int]) -> None:
    """A request that stops half-way through its headers is dropped within 7 s."""
    _, port = server
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /webhooks/shop HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(7.0)  # longer than uvicorn's timeout_keep_alive (5 s)
        try:
            closed = sock.recv(1024) is not None
        except TimeoutError:
            closed = False
    assert closed
