"""`channel-sync demo`: the three sandbox marketplaces, the daemon syncing them on a SQLite file,
and buyers placing orders, until Ctrl-C or `--duration`.

In order: the sandboxes start as a child process (`channel-sync sandbox`, in a session of its own
so that Ctrl-C reaches only the demo, which stops the daemon first and then them; it also stops
when the demo's end of its standard input closes, however the demo ends). The demo writes a
config directory under the state dir pointing three channels at them (sandbox/demo_config.py),
starts a fresh store holding the demo catalogue's SKUs, bundles and on hand, and runs the daemon
in this process. Once the daemon listens, each channel is synced once through the admin API (so
its listings are bound), `STATE/demo.json` is written, and three things start: the buyers, who
place orders on the marketplaces and cancel some (sandbox/demo_orders.py); the warehouse, which
ships the store's open orders through the admin API (sandbox/demo_warehouse.py); and the view,
which draws the figures live on a terminal or prints a line every few seconds elsewhere
(sandbox/demo_view.py). `--duration` stops those three, takes a last look while the daemon still
answers, then stops the daemon; Ctrl-C stops the daemon at once and the last look stands. The
summary follows: those figures, and what the store holds at the end (sandbox/demo_summary.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from rich.console import Console

from sandbox.demo_catalogue import DEMO_CATALOGUE, Catalogue
from sandbox.demo_config import CHANNEL_KINDS, DemoPaths, write_channel_files, write_main_file
from sandbox.demo_config import write_private as write_private_file
from sandbox.demo_figures import Figures
from sandbox.demo_orders import OrderGenerator, OrderTally
from sandbox.demo_summary import read_store
from sandbox.demo_view import DemoView, plain_text
from sandbox.demo_warehouse import Warehouse, WarehouseTally
from sandbox.ports import free_port

if TYPE_CHECKING:
    from config.loader import AppConfig
    from sync.service import Service

log = logging.getLogger(__name__)

TOKEN_ENV = "CHANNEL_SYNC_DEMO_ADMIN_TOKEN"  # noqa: S105 - a variable name
STATE_ENV = "CHANNEL_SYNC_STATE_DIR"
WEBHOOKS_PORT_ENV = "CHANNEL_SYNC_LISTENERS__WEBHOOKS__PORT"
LOCATION = "default"
SANDBOX_START_S = 60.0
SYNC_ATTEMPTS = 3


class DemoError(RuntimeError):
    """The demo cannot start; the message says why."""


@dataclass(frozen=True)
class DemoOptions:
    """What `channel-sync demo` was asked for."""

    state_dir: Path
    duration_s: float | None = None
    rate: float = 2.0
    seed: int = 1
    catalogue: Catalogue = DEMO_CATALOGUE


Serve = Callable[["AppConfig", Callable[["Service"], None]], int]
"""Runs the daemon on a config until it stops; the exit code (daemon.py's `_serve`)."""
Load = Callable[[Path], "AppConfig"]
"""Loads a config directory (daemon.py's `_load_or_exit`)."""


def run_demo(options: DemoOptions, *, load: Load, serve: Serve, say: Callable[[str], None]) -> int:
    """Run the whole demo; the exit code. `say` shows a human line (never a secret)."""
    paths = DemoPaths(options.state_dir.resolve())
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    os.environ[TOKEN_ENV] = _admin_token(paths)
    os.environ[STATE_ENV] = str(paths.state_dir)
    base = load(write_main_file(paths))
    webhooks_url = _webhooks_url(base)
    _fresh_store(base.database_url)
    with SandboxProcess(paths, ebay_notify_url=f"{webhooks_url}/webhooks/ebay") as sandboxes:
        try:
            # The store needs no sandbox: it is made while they start.
            _load_catalogue(base.database_url, options.catalogue)
            info = sandboxes.wait_ready(SANDBOX_START_S)
        except KeyboardInterrupt:
            return 130
        write_channel_files(paths, info, webhooks_url)
        driver = DemoDriver(options, paths, info, say)
        code = serve(load(paths.config_dir), driver.on_ready)
    say(final_summary(base.database_url, driver))
    return code


def _admin_token(paths: DemoPaths) -> str:
    """The admin token, made once per state dir and kept in a 0600 file."""
    if not paths.admin_token_file.exists():
        write_private_file(paths.admin_token_file, secrets.token_urlsafe(24))
    return paths.admin_token_file.read_text().strip()


def _webhooks_url(config: AppConfig) -> str:
    """Where the daemon's webhook listener will be: the channels' webhook and notification
    URLs must name it before it starts, so port 0 is replaced by a port free now, outside the
    range the sandboxes' own listeners are given theirs from (`sandbox.ports`)."""
    listener = config.main.listeners.webhooks
    port = listener.port
    if port == 0:
        port = free_port(listener.host)
        os.environ[WEBHOOKS_PORT_ENV] = str(port)
    host = f"[{listener.host}]" if ":" in listener.host else listener.host
    return f"http://{host}:{port}"


def _fresh_store(database_url: str) -> None:
    """Remove the previous run's SQLite store: the sandboxes start empty every run, and their
    order ids start again. Refused while another demo runs on it."""
    from sync.db import Database
    from sync.single_instance import StoreInUseError, exclusive_store

    db = Database(database_url)
    try:
        with exclusive_store(db) as lock:
            if lock is None:
                raise DemoError("the demo runs on its own SQLite store, not on database.url")
            database = Path(str(lock).removesuffix(".lock"))
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{database}{suffix}").unlink(missing_ok=True)
    except StoreInUseError as exc:
        raise DemoError(f"another demo runs on this state dir: {exc}") from None
    finally:
        db.dispose()


def _load_catalogue(database_url: str, catalogue: Catalogue) -> None:
    """The catalogue's SKUs and bundles, and its units on hand at the one location."""
    from sync.catalogue import define_catalogue
    from sync.db import Database, ensure_schema
    from sync.stock_ops import apply_on_hand

    products = {p.sku: p.title for p in catalogue.products}
    bundles = {b.sku: (b.title, dict(b.components)) for b in catalogue.bundles}
    rows = [(p.sku, LOCATION, p.units) for p in catalogue.products]
    db = Database(database_url)
    try:
        ensure_schema(db, auto_migrate=True)

        def load(session: Any) -> None:
            define_catalogue(session, products, bundles)
            apply_on_hand(session, rows, source="demo")

        db.transact(load)
    finally:
        db.dispose()


class SandboxProcess:
    """`channel-sync sandbox` as a child process that ends with the demo."""

    def __init__(self, paths: DemoPaths, *, ebay_notify_url: str) -> None:
        self.paths = paths
        self.args = [
            sys.executable,
            "-m",
            "daemon",
            "sandbox",
            "--ready-file",
            str(paths.sandboxes_file),
            "--ebay-notify-url",
            ebay_notify_url,
            "--stop-on-stdin-eof",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SandboxProcess:
        self.paths.sandboxes_file.unlink(missing_ok=True)
        # A session of its own: Ctrl-C goes to the demo, which stops the daemon before these.
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, start_new_session=True)
        return self

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        """The ready file's entries, once the sandboxes listen."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while not self.paths.sandboxes_file.exists():
            if self.proc.poll() is not None:
                raise DemoError(f"the sandboxes exited with code {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise DemoError(f"the sandboxes did not start within {timeout_s:.0f} s")
            time.sleep(0.05)
        entries: dict[str, Any] = json.loads(self.paths.sandboxes_file.read_text())["sandboxes"]
        return entries

    def __exit__(self, *_: object) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # they stop on their own at the end of their input
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class DemoDriver:
    """What the demo does in the daemon's event loop once it listens."""

    def __init__(
        self,
        options: DemoOptions,
        paths: DemoPaths,
        sandboxes: dict[str, Any],
        say: Callable[[str], None],
    ) -> None:
        self.options = options
        self.paths = paths
        self.sandboxes = sandboxes
        self.say = say
        self.tasks: set[asyncio.Task[None]] = set()
        self.started = time.monotonic()
        self.tally = OrderTally()
        self.warehouse = WarehouseTally()
        self.figures: Figures | None = None
        self.view: DemoView | None = None
        self.listed = {sku: units for sku, units, _ in options.catalogue.listed()}
        # A live table on a terminal; a plain line every few seconds in a log or CI.
        self.console = Console() if sys.stdout.isatty() else None

    def on_ready(self, service: Service) -> None:
        """The daemon listens: sync, announce, place orders (a task on the daemon's loop)."""
        task = asyncio.get_running_loop().create_task(self._drive(service), name="demo")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _drive(self, service: Service) -> None:
        assert service.admin_address is not None
        host, port = service.admin_address
        admin_url = f"http://{host}:{port}"
        token = os.environ[TOKEN_ENV]
        stop = service.stop_event
        async with httpx.AsyncClient(
            base_url=admin_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as admin:
            await asyncio.gather(*(self._first_sync(admin, name) for name in CHANNEL_KINDS))
            self._write_demo_json(admin_url, token)
            self._announce(admin_url)
            self.started = time.monotonic()
            # The buyers, the warehouse and the view stop first, so that the last look at the
            # admin API (the summary) happens while the daemon still answers.
            quiet = asyncio.Event()
            if self.options.duration_s is not None:
                asyncio.get_running_loop().call_later(self.options.duration_s, quiet.set)
            urls = {name: self.sandboxes[name]["sandbox_url"] for name in CHANNEL_KINDS}
            warehouse = Warehouse(admin, seed=self.options.seed)
            self.warehouse = warehouse.tally
            self.view = view = DemoView(
                admin,
                urls,
                listed=self.listed,
                buyers=lambda: self.tally,
                warehouse=lambda: self.warehouse,
                say=self.say,
                console=self.console,
                hint=f"admin API {admin_url} (token in {self.paths.admin_token_file}); "
                "Ctrl-C stops the demo",
            )
            workers = [
                asyncio.create_task(warehouse.run(quiet), name="demo-warehouse"),
                asyncio.create_task(view.run(quiet), name="demo-view"),
            ]
            if self.options.rate > 0:
                generator = OrderGenerator(
                    urls,
                    self.options.catalogue.skus,
                    rate=self.options.rate,
                    seed=self.options.seed,
                    listed=self.listed,
                )
                self.tally = generator.tally
                workers.append(asyncio.create_task(generator.run(quiet), name="demo-orders"))
            waiting = [asyncio.create_task(stop.wait()), asyncio.create_task(quiet.wait())]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            quiet.set()
            await asyncio.gather(*workers, return_exceptions=True)
            if not stop.is_set():  # after Ctrl-C the listener drains: the last look stands
                self.figures = await view.final()
                service.request_stop()
            for task in waiting:
                task.cancel()

    async def _first_sync(self, admin: httpx.AsyncClient, name: str) -> None:
        """Poll and reconcile a channel once, which binds its listings to our SKUs."""
        for attempt in range(1, SYNC_ATTEMPTS + 1):
            try:
                answer = await admin.post(f"/api/channels/{name}/sync")
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            else:
                if answer.status_code == 200:
                    return
                problem = f"HTTP {answer.status_code}"
            if attempt < SYNC_ATTEMPTS:
                await asyncio.sleep(attempt)
        log.warning("demo: channel %s did not sync at start (%s); its jobs will", name, problem)

    def _write_demo_json(self, admin_url: str, token: str) -> None:
        channels = {
            name: {"kind": name, "sandbox_url": self.sandboxes[name]["sandbox_url"]}
            for name in CHANNEL_KINDS
        }
        info = {"admin_url": admin_url, "admin_token": token, "channels": channels}
        write_private_file(self.paths.demo_json, json.dumps(info, indent=2) + "\n")

    def _announce(self, admin_url: str) -> None:
        token_file = self.paths.admin_token_file
        rate = self.options.rate
        buyers = f"{rate:g} orders/s across the three channels" if rate > 0 else "none (--rate 0)"
        lines = [
            "",
            f"channel-sync demo is running (store: {self.paths.database})",
            f"  admin API   {admin_url}   token in {token_file}",
            f"  try         curl {admin_url}/healthz",
            f'              curl -H "Authorization: Bearer $(cat {token_file})" '
            f"{admin_url}/api/status",
        ]
        for name in CHANNEL_KINDS:
            url = self.sandboxes[name]["sandbox_url"]
            lines.append(f"  {name:<10}  {url}/_sandbox/inventory")
        lines += [
            f"  buyers      {buyers}",
            f"  details     {self.paths.demo_json}",
            "Press Ctrl-C to stop.",
            "",
        ]
        self.say("\n".join(lines))


def final_summary(database_url: str, driver: DemoDriver) -> str:
    """The closing text: the last figures of the view, what the buyers and the warehouse did,
    and what the store holds now that the daemon has stopped."""
    from sqlalchemy.exc import SQLAlchemyError

    parts = []
    figures = driver.figures or (driver.view.last if driver.view else None)
    if figures is not None:
        parts.append(f"[demo summary] {plain_text(figures)}")
    else:
        parts.append(
            f"[demo summary] buyers: {driver.tally.describe()}\n"
            f"warehouse: {driver.warehouse.describe()}"
        )
    try:
        parts.append(read_store(database_url).text())
    except (SQLAlchemyError, OSError) as exc:
        parts.append(f"[demo summary] store unreadable ({type(exc).__name__})")
    return "\n".join(parts)
