"""How `channel-sync demo` shows its figures (sandbox/demo_figures.py) while it runs: a live rich
table on a terminal, refreshed twice a second; a plain line every few seconds elsewhere (a log,
CI); plain text at the end. Each refresh asks the admin API (`/api/status`, `/api/stock`,
`/metrics`) and every sandbox (`/_sandbox/inventory`, `/_sandbox/calls`) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from sandbox.demo_figures import Answers, ChannelFigures, Figures, figures
from sandbox.demo_orders import OrderTally
from sandbox.demo_warehouse import WarehouseTally

REFRESH_S = 0.5
PLAIN_EVERY_S = 10.0
LOOK_TIMEOUT_S = 5.0

COLUMNS: tuple[tuple[str, Callable[[ChannelFigures], str]], ...] = (
    ("channel", lambda c: c.name),
    ("orders in", lambda c: str(c.orders_in)),
    ("sold out", lambda c: str(c.sold_out)),
    ("prevented", lambda c: str(c.prevented)),
    ("cancelled", lambda c: str(c.cancelled)),
    ("shipped", lambda c: str(c.shipped)),
    ("stock pushes", lambda c: str(c.stock_pushes)),
    ("shipments pushed", lambda c: str(c.shipments_pushed)),
    ("lag", lambda c: "-" if c.lag_s is None else f"{c.lag_s:.1f} s"),
    ("API calls", lambda c: str(c.api_calls)),
    ("throttled", lambda c: str(c.throttles)),
    ("errors", lambda c: str(c.errors)),
    ("oversold", lambda c: str(c.oversold)),
)
"""The channel table's columns: header, and the cell of a channel."""


def _quantity(value: int | None) -> str:
    return "?" if value is None else str(value)


def headline(fig: Figures) -> str:
    """Elapsed time, and oversells prevented versus oversold."""
    daemon = "" if fig.daemon_answered else "; daemon not answering"
    return (
        f"demo {fig.elapsed_s:.0f} s: {fig.prevented} oversell(s) prevented, "
        f"{fig.oversold} order(s) oversold{daemon}"
    )


def render(fig: Figures, hint: str = "") -> RenderableType:
    """The live view: the channel table and the contended SKUs side by side per channel; `hint`
    (where the admin API is, how to stop) below them."""
    table = Table(title="channels", title_justify="left", expand=False)
    for header, _ in COLUMNS:
        table.add_column(header, justify="left" if header == "channel" else "right")
    for channel in fig.channels:
        table.add_row(*(cell(channel) for _, cell in COLUMNS))
    names = [c.name for c in fig.channels]
    skus = Table(title="most contended SKUs", title_justify="left")
    skus.add_column("SKU")
    skus.add_column("our available", justify="right")
    for name in names:
        skus.add_column(f"{name} shows", justify="right")
    for row in fig.contended:
        cells = [_quantity(row.shown.get(name)) for name in names]
        style = "red" if row.available is not None and row.available < 0 else None
        skus.add_row(row.sku, _quantity(row.available), *cells, style=style)
    return Group(
        Text(headline(fig), style="bold"),
        table,
        skus,
        Text(f"buyers: {fig.buyers}\nwarehouse: {fig.warehouse}"),
        Text(hint, style="dim"),
    )


def plain_line(fig: Figures) -> str:
    """One line for a log or CI: the figures summed over the channels."""
    orders = ", ".join(f"{c.name} {c.orders_in}" for c in fig.channels)
    lags = [c.lag_s for c in fig.channels if c.lag_s is not None]
    lag = f"{max(lags):.1f} s" if lags else "-"
    total = Counter[str]()
    for c in fig.channels:
        total.update(
            {
                "pushes": c.stock_pushes,
                "shipments": c.shipments_pushed,
                "throttles": c.throttles,
                "errors": c.errors,
            }
        )
    return (
        f"[{headline(fig)}] orders in: {orders}; stock pushes {total['pushes']}; "
        f"shipments pushed {total['shipments']}; throttled {total['throttles']}; "
        f"errors {total['errors']}; max lag {lag}"
    )


def plain_text(fig: Figures) -> str:
    """The figures as plain text, for the summary at the end."""
    headers = [h for h, _ in COLUMNS]
    rows = [[cell(c) for _, cell in COLUMNS] for c in fig.channels]
    lines = [headline(fig), *_aligned([headers, *rows])]
    names = [c.name for c in fig.channels]
    sku_rows = [["SKU", "our available", *(f"{n} shows" for n in names)]]
    sku_rows += [
        [r.sku, _quantity(r.available), *(_quantity(r.shown.get(n)) for n in names)]
        for r in fig.contended
    ]
    lines += ["most contended SKUs:", *_aligned(sku_rows)]
    lines += [f"buyers: {fig.buyers}", f"warehouse: {fig.warehouse}"]
    return "\n".join(lines)


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  "
        + "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]


# Looking ------------------------------------------------------------------------------------


async def _json(client: httpx.AsyncClient, url: str, **params: Any) -> Any:
    with contextlib.suppress(httpx.HTTPError, ValueError):
        answer = await client.get(url, params=params or None, timeout=LOOK_TIMEOUT_S)
        if answer.status_code == 200:
            return answer.json()
    return None


async def _text(client: httpx.AsyncClient, url: str) -> str:
    with contextlib.suppress(httpx.HTTPError):
        answer = await client.get(url, timeout=LOOK_TIMEOUT_S)
        if answer.status_code == 200:
            return answer.text
    return ""


async def look(
    admin: httpx.AsyncClient, sandbox: httpx.AsyncClient, sandboxes: Mapping[str, str]
) -> Answers:
    """Ask the admin API and every sandbox, all at once. `admin` carries the token; `sandbox`
    must not (the marketplaces never see it)."""
    names = list(sandboxes)
    status, stock, metrics, *per_channel = await asyncio.gather(
        _json(admin, "/api/status"),
        _json(admin, "/api/stock", limit=1000),
        _text(admin, "/metrics"),
        *(_json(sandbox, f"{sandboxes[n]}/_sandbox/inventory") for n in names),
        *(_json(sandbox, f"{sandboxes[n]}/_sandbox/calls") for n in names),
    )
    inventories, calls = per_channel[: len(names)], per_channel[len(names) :]
    return Answers(
        status=status,
        stock=(stock or {}).get("items", []),
        metrics=metrics,
        inventory={n: v for n, v in zip(names, inventories, strict=True) if v is not None},
        calls={n: v for n, v in zip(names, calls, strict=True) if v is not None},
    )


class DemoView:
    """Looks and draws until stopped: a live table on a terminal, else a plain line every
    PLAIN_EVERY_S seconds through `say`. `last` keeps the latest figures for the summary."""

    def __init__(
        self,
        admin: httpx.AsyncClient,
        sandboxes: Mapping[str, str],
        *,
        listed: Mapping[str, int],
        buyers: Callable[[], OrderTally],
        warehouse: Callable[[], WarehouseTally],
        say: Callable[[str], None],
        console: Console | None = None,
        hint: str = "",
    ) -> None:
        self.admin = admin
        self.sandboxes = dict(sandboxes)
        self.listed = dict(listed)
        self.buyers = buyers
        self.warehouse = warehouse
        self.say = say
        self.console = console
        self.hint = hint
        self.started = time.monotonic()
        self.last: Figures | None = None

    async def refresh(self, sandbox: httpx.AsyncClient) -> Figures:
        """Look once and keep the figures."""
        answers = await look(self.admin, sandbox, self.sandboxes)
        self.last = figures(
            answers,
            channels=list(self.sandboxes),
            listed=self.listed,
            buyers=self.buyers(),
            warehouse=self.warehouse(),
            elapsed_s=time.monotonic() - self.started,
        )
        return self.last

    async def run(self, stop: asyncio.Event) -> None:
        """Draw until `stop` is set."""
        self.started = time.monotonic()
        async with httpx.AsyncClient() as sandbox:
            if self.console is not None:
                first = await self.refresh(sandbox)
                live = Live(render(first, self.hint), console=self.console, refresh_per_second=2)
                with live:
                    while not await _stopped(stop, REFRESH_S):
                        live.update(render(await self.refresh(sandbox), self.hint))
            else:
                while not await _stopped(stop, PLAIN_EVERY_S):
                    self.say(plain_line(await self.refresh(sandbox)))

    async def final(self) -> Figures | None:
        """A last look (the daemon still answering), else the latest figures."""
        async with httpx.AsyncClient() as sandbox:
            with contextlib.suppress(httpx.HTTPError):
                return await self.refresh(sandbox)
        return self.last


async def _stopped(stop: asyncio.Event, wait_s: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=wait_s)
    return stop.is_set()
