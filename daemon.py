"""channel-sync entry point: the command line and the process lifecycle around the engine."""

from __future__ import annotations

import asyncio
import logging
import sys
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from config.loader import AppConfig
    from sync.scheduler import SchedulerSettings
    from sync.sealing import Keyring
    from sync.service import Service

log = logging.getLogger("channel_sync")

EXIT_CONFIG = 2

CONFIG_OPTION = click.option(
    "--config",
    "config_dir",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Config directory holding channel-sync.toml and channels/*.toml.",
)


def _version() -> str:
    return package_version("channel-sync")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="channel-sync")
def cli() -> None:
    """Keep a seller's orders and stock in sync across Shopify, Amazon and eBay."""


@cli.command("check-config")
@click.argument("config_dir", type=click.Path(path_type=Path, file_okay=False))
def check_config(config_dir: Path) -> None:
    """Validate DIR and print what would run (secrets masked); exit 2 on any error."""
    from config.check import run_check

    sys.exit(run_check(config_dir))


@cli.command()
@CONFIG_OPTION
def run(config_dir: Path) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    sys.exit(_serve(_load_or_exit(config_dir)))


@cli.command()
@CONFIG_OPTION
def migrate(config_dir: Path) -> None:
    """Bring the store's schema up to date."""
    from sync.db import Database, current_revision, render_url, upgrade

    app_config = _load_or_exit(config_dir)
    _configure_logging(app_config)
    db = Database(app_config.database_url)
    try:
        before = current_revision(db)
        upgrade(db)
        after = current_revision(db)
    finally:
        db.dispose()
    where = render_url(app_config.database_url)
    if before == after:
        click.echo(f"{where}: already at revision {after}")
    else:
        click.echo(f"{where}: migrated from {before or 'an empty store'} to {after}")


@cli.command("rotate-key")
@CONFIG_OPTION
@click.option(
    "--new-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Only write a new buyer-data key to this file (0600; never overwritten) and print its "
    "reference and key id.",
)
def rotate_key(config_dir: Path, new_key_file: Path | None) -> None:
    """Re-seal buyers' personal data under the current [buyer_data] key.

    Steps: (1) `--new-key-file PATH` writes a new key; (2) make `file:PATH` the `key` and move
    the old key into `previous_keys`; (3) run this without `--new-key-file`, until it reports 0
    remaining (safe beside a running daemon; restart the daemon with the new config first, so
    it seals under the new key too); (4) drop the old key from `previous_keys`.
    """
    from sync.db import Database, SchemaOutOfDateError, ensure_schema
    from sync.rekey import rotate
    from sync.sealing import key_id, write_new_key_file

    if new_key_file is not None:
        path = new_key_file.expanduser().resolve()
        try:
            key = write_new_key_file(path)
        except FileExistsError:
            click.echo(f"{path} exists: refusing to overwrite a key", err=True)
            sys.exit(EXIT_CONFIG)
        click.echo(f"wrote a new buyer-data key, id {key_id(key)}")
        click.echo(f"reference: file:{path}")
        click.echo(
            "next: set [buyer_data] key to that reference, move the old key into previous_keys, "
            "then run `channel-sync rotate-key --config DIR`"
        )
        return
    app_config = _load_or_exit(config_dir)
    _configure_logging(app_config)
    keyring = _load_keyring(app_config)
    db = Database(app_config.database_url)
    try:
        ensure_schema(db, auto_migrate=app_config.main.database.auto_migrate)
        report = rotate(db, keyring)
    except SchemaOutOfDateError as exc:
        click.echo(str(exc), err=True)
        sys.exit(3)
    finally:
        db.dispose()
    click.echo(f"current key: {keyring.current_id}")
    click.echo(
        f"sealed plain values left by an older version: {report.sealed_legacy_orders} order(s), "
        f"{report.sealed_legacy_inbox} webhook delivery(ies)"
    )
    click.echo(
        f"re-sealed under the current key: {report.resealed_orders} order(s), "
        f"{report.resealed_inbox} webhook delivery(ies)"
    )
    if report.unopenable:
        click.echo(f"failed their integrity check (left as they are): {report.unopenable}")
    unknown = report.unknown_keys(keyring)
    for old_id, count in sorted(report.remaining.items()):
        note = " (not in the keyring: add that key to previous_keys)" if old_id in unknown else ""
        click.echo(f"remaining under key {old_id}: {count}{note}")
    if not report.remaining:
        click.echo("remaining under old keys: 0")
    sys.exit(1 if report.remaining else 0)


def _load_keyring(app_config: AppConfig) -> Keyring:
    """The buyer-data keyring the config names (generating STATE_DIR's key on first use)."""
    from sync.sealing import SealingError, load_keyring

    buyer_data = app_config.main.buyer_data
    try:
        keyring, created = load_keyring(
            buyer_data.key.reveal() if buyer_data.key else None,
            [key.reveal() for key in buyer_data.previous_keys],
            app_config.main.state_dir,
        )
    except (SealingError, OSError) as exc:
        click.echo(f"buyer data key: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    if created is not None:
        log.warning(
            "generated a buyer-data key at %s (id %s): back it up with the store",
            created,
            keyring.current_id,
        )
    if buyer_data.key is None and not app_config.database_url.startswith("sqlite"):
        log.warning(
            "buyer data key generated per instance: every instance sharing this store must "
            "hold the same key; set [buyer_data] key"
        )
    return keyring


@cli.group()
def stock() -> None:
    """Stock on hand: set it from a file."""


@stock.command("import")
@click.argument(
    "csv_file", required=False, type=click.Path(path_type=Path, dir_okay=False, exists=True)
)
@click.option(
    "--from-channel",
    "channel",
    metavar="NAME",
    help="Take on hand from what this channel shows now, instead of a file.",
)
@click.option(
    "--location",
    help="With --from-channel: the location to set (default: the channel's only location).",
)
@click.option("--yes", is_flag=True, help="With --from-channel: apply without asking.")
@CONFIG_OPTION
def stock_import(
    csv_file: Path | None, channel: str | None, location: str | None, yes: bool, config_dir: Path
) -> None:
    """Set on hand from `sku,location,on_hand` rows (every row, or none if any is bad: exit 2),
    or from a channel's current quantities (--from-channel NAME)."""
    from sync.db import Database, SchemaOutOfDateError, ensure_schema
    from sync.stock_ops import StockImportError, import_stock_csv

    if (csv_file is None) == (channel is None):
        raise click.UsageError("give either FILE.csv or --from-channel NAME")
    if csv_file is None and channel is not None:
        _import_from_channel(config_dir, channel, location, assume_yes=yes)
        return
    assert csv_file is not None
    if location is not None or yes:
        raise click.UsageError("--location and --yes go with --from-channel")
    app_config = _load_or_exit(config_dir)
    _configure_logging(app_config)
    try:
        data = csv_file.read_bytes()
    except OSError as exc:
        click.echo(f"{csv_file}: cannot read: {exc.strerror}", err=True)
        sys.exit(EXIT_CONFIG)
    db = Database(app_config.database_url)
    try:
        ensure_schema(db, auto_migrate=app_config.main.database.auto_migrate)
        result = db.transact(lambda session: import_stock_csv(session, data))
    except SchemaOutOfDateError as exc:
        click.echo(str(exc), err=True)
        sys.exit(3)
    except StockImportError as exc:
        for error in exc.errors:
            click.echo(f"{csv_file}:{error}", err=True)
        click.echo(f"{csv_file}: {len(exc.errors)} bad row(s); nothing was applied", err=True)
        sys.exit(EXIT_CONFIG)
    finally:
        db.dispose()
    # A running daemon's pusher finds the dirty listings on its own timer: no signal needed.
    click.echo(
        f"{csv_file}: {result.rows_applied} rows applied, {len(result.skus_changed)} SKUs changed, "
        f"{len(result.dirty_channels)} channels to update"
    )
    if result.newly_oversold:
        click.echo(f"{len(result.newly_oversold)} orders are now oversold", err=True)


def _import_from_channel(
    config_dir: Path, channel: str, location: str | None, *, assume_yes: bool
) -> None:
    from sync.db import Database, SchemaOutOfDateError, ensure_schema
    from sync.listings import apply_onboarding, plan_onboarding

    app_config = _load_or_exit(config_dir)
    _configure_logging(app_config)
    config = app_config.channels.get(channel)
    if config is None:
        click.echo(f"no channel {channel!r} in {config_dir / 'channels'}", err=True)
        sys.exit(EXIT_CONFIG)
    if location is None:
        if len(config.locations) != 1:
            click.echo(
                f"channel {channel} is fed by locations {', '.join(config.locations)}: "
                "name the one to set with --location",
                err=True,
            )
            sys.exit(EXIT_CONFIG)
        location = config.locations[0]
    listed, quantities = _read_channel(app_config, channel)
    db = Database(app_config.database_url)
    try:
        ensure_schema(db, auto_migrate=app_config.main.database.auto_migrate)
        channel_id = _channel_id(db, app_config, channel)
        with db.read_session() as session:
            plan = plan_onboarding(session, channel_id, location, listed, quantities)
        _show_plan(channel, plan)
        if plan.is_empty:
            click.echo("nothing to change")
            return
        if not assume_yes and not click.confirm("apply these changes?", default=False):
            click.echo("nothing was changed")
            sys.exit(1)
        result = db.transact(lambda session: apply_onboarding(session, channel_id, plan))
    except SchemaOutOfDateError as exc:
        click.echo(str(exc), err=True)
        sys.exit(3)
    finally:
        db.dispose()
    click.echo(
        f"{len(plan.new_skus)} SKUs created, {len(plan.new_bindings)} listings bound, "
        f"{len(result.skus_changed)} on-hand figures changed at {location}"
    )


def _read_channel(app_config: AppConfig, channel: str) -> tuple[list[Any], dict[str, int]]:
    """The channel's listings and what its stock read answers for them (exit 1 on failure)."""
    from connectors.errors import ConnectorError
    from connectors.registry import connector_for

    config = app_config.channels[channel]
    factory = connector_for(config.kind)
    if factory is None:
        click.echo(f"channel {channel}: no {config.kind} connector in this version", err=True)
        sys.exit(EXIT_CONFIG)

    async def read() -> tuple[list[Any], dict[str, int]]:
        connector = factory(config)
        try:
            listed = list(await connector.list_listings())
            refs = [item.listing_ref for item in listed]
            return listed, dict(await connector.read_stock(refs)) if refs else {}
        finally:
            await connector.aclose()

    try:
        return asyncio.run(read())
    except ConnectorError as exc:
        click.echo(f"channel {channel}: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)


def _channel_id(db: Any, app_config: AppConfig, channel: str) -> int:
    from sync.channels import register_channels

    configured = {name: (ch.kind, ch.enabled) for name, ch in app_config.channels.items()}
    ids: dict[str, int] = db.transact(lambda session: register_channels(session, configured))
    return ids[channel]


def _show_plan(channel: str, plan: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False)
    table = Table(title=f"on hand at {plan.location} from channel {channel}")
    for column in ("SKU", "on hand now", "channel shows", "note"):
        table.add_column(column)
    new_skus, new_refs = set(plan.new_skus), {sku for sku, _ in plan.new_bindings}
    for sku, old, new in plan.on_hand:
        note = "new SKU" if sku in new_skus else "newly bound" if sku in new_refs else ""
        table.add_row(sku, str(old), str(new), note if old != new or note else "unchanged")
    console.print(table)
    for ref, why in plan.skipped:
        console.print(f"skipped listing {ref}: {why}")


@cli.command()
@CONFIG_OPTION
def listings(config_dir: Path) -> None:
    """Per channel: SKUs bound, the channel's SKUs we do not know, ours the channel lacks."""
    from rich.console import Console

    from sync.db import Database, SchemaOutOfDateError, ensure_schema
    from sync.listings import listings_report

    app_config = _load_or_exit(config_dir)
    _configure_logging(app_config)
    console = Console()
    db = Database(app_config.database_url)
    try:
        ensure_schema(db, auto_migrate=app_config.main.database.auto_migrate)
        for name, config in app_config.channels.items():
            if not config.enabled:
                console.print(f"[bold]{name}[/bold]: disabled")
                continue
            listed, _ = _read_channel(app_config, name)
            channel_id = _channel_id(db, app_config, name)
            with db.read_session() as session:
                report = listings_report(session, channel_id, name, listed)
            console.print(
                f"[bold]{name}[/bold] ({config.kind}): {len(report.bound)} bound, "
                f"{len(report.unknown)} unknown here, {len(report.missing)} missing there"
            )
            for sku, ref in report.bound:
                console.print(f"  bound    {sku} -> {ref}", markup=False)
            for ref, carried in report.unknown:
                console.print(f"  unknown  {ref} carries {carried or '(no SKU)'}", markup=False)
            for sku in report.missing:
                console.print(f"  missing  {sku}", markup=False)
    except SchemaOutOfDateError as exc:
        click.echo(str(exc), err=True)
        sys.exit(3)
    finally:
        db.dispose()


def _units_option(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> list[tuple[str, int]]:
    units = []
    for value in values:
        sku, equals, quantity = value.rpartition("=")
        if not equals or not sku.strip() or not quantity.strip().isdigit():
            raise click.BadParameter(f"{value!r} is not SKU=QTY (QTY a whole number)")
        units.append((sku.strip(), int(quantity)))
    return units


@cli.command()
@click.argument("order")
@click.option("--carrier", required=True, help="The carrier, as the channel knows it (e.g. UPS).")
@click.option("--tracking", required=True, help="The parcel's tracking number.")
@click.option(
    "--line",
    "lines",
    multiple=True,
    metavar="SKU=QTY",
    callback=_units_option,
    help="Units of one SKU in the parcel (repeat; none: every open unit of the order).",
)
@click.option("--channel", default=None, help="Look ORDER up among this channel's orders only.")
@CONFIG_OPTION
def ship(
    order: str,
    carrier: str,
    tracking: str,
    lines: list[tuple[str, int]],
    channel: str | None,
    config_dir: Path,
) -> None:
    """Record a shipment of ORDER (our id, id:N, or the channel's order id or number) and queue it
    for the order's channel; exit 2 when it is refused, with nothing written."""
    from sync.db import Database, SchemaOutOfDateError, ensure_schema
    from sync.fanout import FanoutInputError, Units, record_shipment, resolve_order

    app_config = _load_or_exit(config_dir)
    _configure_logging(app_config)
    db = Database(app_config.database_url)
    try:
        ensure_schema(db, auto_migrate=app_config.main.database.auto_migrate)
        recorded = db.transact(
            lambda session: record_shipment(
                session,
                resolve_order(session, order, channel),
                carrier=carrier,
                tracking=tracking,
                lines=[Units(sku, quantity) for sku, quantity in lines],
            )
        )
    except SchemaOutOfDateError as exc:
        click.echo(str(exc), err=True)
        sys.exit(3)
    except FanoutInputError as exc:
        click.echo(f"not shipped: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    finally:
        db.dispose()
    # A running daemon's fan-out worker finds the job on its own timer: no signal needed.
    click.echo(
        f"shipment {recorded.record_id} recorded for order {recorded.order_id}: "
        f"{sum(recorded.units.values())} unit(s); the order is {recorded.status.value}; "
        "queued for its channel"
    )


@cli.command()
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(".demo-state"),
    show_default=True,
    help="Where the demo keeps its config, secrets, SQLite store (fresh each run) and demo.json.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds once running (default: run until Ctrl-C).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Orders per second placed by buyers across the three marketplaces (0: none).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the buyers' draws.")
def demo(state_dir: Path, duration: float | None, rate: float, seed: int) -> None:
    """The sandbox Shopify, Amazon and eBay marketplaces on loopback, the daemon syncing them on a
    SQLite file, and buyers placing orders; writes STATE_DIR/demo.json once everything listens."""
    from sandbox.demo import DemoError, DemoOptions, run_demo

    options = DemoOptions(state_dir=state_dir, duration_s=duration, rate=rate, seed=seed)
    try:
        code = run_demo(
            options,
            load=_load_or_exit,
            serve=lambda config, on_ready: _serve(config, on_ready=on_ready),
            say=lambda text: click.echo(text, err=True),
        )
    except DemoError as exc:
        click.echo(f"demo: {exc}", err=True)
        code = 1
    sys.exit(code)


@cli.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address.")
@click.option("--shopify-port", type=int, default=0, help="Port of the Shopify store (0: any).")
@click.option("--amazon-port", type=int, default=0, help="Port of the Amazon account (0: any).")
@click.option("--ebay-port", type=int, default=0, help="Port of the eBay account (0: any).")
@click.option("--reference-port", type=int, default=0, help="Port of the reference one (0: any).")
@click.option("--no-sqs", is_flag=True, help="Do not start the loopback SQS server for Amazon.")
@click.option(
    "--ready-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the addresses, tokens and secrets here (mode 0600) once all listen.",
)
@click.option("--ebay-notify-url", default=None, hidden=True)  # the demo's daemon
@click.option("--stop-on-stdin-eof", is_flag=True, hidden=True)  # the demo's child process
def sandbox_command(
    host: str,
    shopify_port: int,
    amazon_port: int,
    ebay_port: int,
    reference_port: int,
    no_sqs: bool,
    ready_file: Path | None,
    ebay_notify_url: str | None,
    stop_on_stdin_eof: bool,
) -> None:
    """Only the sandbox marketplaces (Shopify, Amazon with a loopback SQS server, eBay, and the
    reference channel) on loopback, listing the demo catalogue, printing their addresses; until
    Ctrl-C."""
    from sandbox.launcher import SandboxPlan, run_sandboxes

    plan = SandboxPlan(
        host=host,
        ports={
            "shopify": shopify_port,
            "amazon": amazon_port,
            "ebay": ebay_port,
            "reference": reference_port,
        },
        ready_file=ready_file,
        start_sqs=not no_sqs,
        ebay_notify_url=ebay_notify_url,
        stop_on_stdin_eof=stop_on_stdin_eof,
    )
    try:
        asyncio.run(run_sandboxes(plan, say=lambda line: click.echo(line)))
    except ValueError as exc:  # not a loopback address
        raise click.UsageError(str(exc)) from exc
    except OSError as exc:
        click.echo(f"cannot listen on {host}: {exc.strerror}", err=True)
        sys.exit(1)


def _load_or_exit(config_dir: Path) -> AppConfig:
    from config.loader import ConfigError, load_config

    try:
        return load_config(config_dir)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(EXIT_CONFIG)


def _configure_logging(app_config: AppConfig) -> None:
    from config.secrets import known_secret_values
    from sync.logs import configure_logging

    logging_settings = app_config.main.logging
    configure_logging(logging_settings.level, logging_settings.format, known_secret_values)


def _serve(app_config: AppConfig, on_ready: Callable[[Service], None] | None = None) -> int:
    """Build the service from the config and run it on a fresh event loop."""
    from connectors.registry import connector_for
    from sync.db import Database
    from sync.outbox import RetrySchedule
    from sync.reservations import StockRules
    from sync.service import ChannelSpec, Listener, Service, ServiceSettings

    _configure_logging(app_config)
    keyring = _load_keyring(app_config)
    main = app_config.main
    admin = main.listeners.admin
    tls = (str(admin.tls_certfile), str(admin.tls_keyfile)) if admin.is_tls else (None, None)
    settings = ServiceSettings(
        webhooks=Listener(
            "webhooks",
            main.listeners.webhooks.host,
            main.listeners.webhooks.port,
            read_timeout_s=main.listeners.webhooks.read_timeout_s,
        ),
        admin=Listener(
            "admin",
            admin.host,
            admin.port,
            tls_certfile=tls[0],
            tls_keyfile=tls[1],
            read_timeout_s=admin.read_timeout_s,
        ),
        webhook_max_body_bytes=main.listeners.webhooks.max_body_bytes,
        admin_token=main.admin.token.reveal(),
        drain_deadline_s=main.shutdown.drain_deadline_s,
        auto_migrate=main.database.auto_migrate,
        store_wait_s=main.database.start_wait_s,
        channels={
            name: ChannelSpec(
                kind=ch.kind,
                enabled=ch.enabled,
                rules=StockRules(**ch.stock.model_dump()),
                locations=tuple(ch.locations),
                poll_interval_s=ch.schedule.poll_interval_s,
                reconcile_interval_s=ch.schedule.reconcile_interval_s,
                push_max_linger_s=ch.push.max_linger_s,
                push_pause_s=ch.push.pause_s,
                push_hold_full=ch.push.hold_full,
                push_confirm_hold_s=ch.push.confirm_hold_s,
            )
            for name, ch in app_config.channels.items()
        },
        buyer_keyring=keyring,
        inbox_retention_days=main.retention.webhook_inbox_days,
        events_retention_days=main.retention.events_days,
        buyer_data_days=main.retention.buyer_data_days,
        version=_version(),
        schedule=_scheduler_settings(app_config),
        outbox_lease_s=main.outbox.lease_s,
        retry=RetrySchedule(
            max_attempts=main.outbox.max_attempts,
            base_s=main.outbox.retry_base_s,
            cap_s=main.outbox.retry_cap_s,
        ),
    )
    log.info("channel-sync %s starting", settings.version)
    connectors = {}
    for name, channel in app_config.channels.items():
        factory = connector_for(channel.kind)
        if factory is None:
            log.warning(
                "channel %s: no %s connector in this version; the channel stays idle",
                name,
                channel.kind,
            )
        elif channel.enabled:
            connectors[name] = factory(channel)
    db = Database(app_config.database_url, pool_size=main.database.pool_size)
    try:
        service = Service(
            settings,
            db,
            on_ready=on_ready,
            connectors=connectors,
            webhook_handlers=_webhook_handlers(app_config, connectors),
            notice_queues=_notice_queues(app_config, connectors),
        )
        return asyncio.run(service.run())
    except OSError as exc:
        log.error("%s", exc)
        return 1
    finally:
        db.dispose()


def _webhook_handlers(app_config: AppConfig, served: Mapping[str, object]) -> dict[str, Any]:
    """The webhook handler of every served channel whose kind receives webhooks."""
    from connectors.registry import webhook_handler_for

    handlers = {}
    for name, channel in app_config.channels.items():
        factory = webhook_handler_for(channel.kind)
        if factory is not None and name in served:
            handlers[name] = factory(channel, served[name])
    return handlers


def _notice_queues(app_config: AppConfig, served: Mapping[str, object]) -> dict[str, Any]:
    """The notice queue of every served channel that has one configured (Amazon's SQS)."""
    from connectors.registry import notice_queue_for

    queues = {}
    for name, channel in app_config.channels.items():
        factory = notice_queue_for(channel.kind)
        queue = factory(channel) if factory is not None and name in served else None
        if queue is not None:
            queues[name] = queue
    return queues


def _scheduler_settings(app_config: AppConfig) -> SchedulerSettings:
    from sync.scheduler import SchedulerSettings

    sched = app_config.main.schedules
    return SchedulerSettings(
        heartbeat_s=sched.heartbeat_s,
        lease_ttl_s=sched.lease_ttl_s,
        outbox_interval_s=sched.outbox_interval_s,
        reconcile_overlap_s=sched.reconcile_overlap_s,
        initial_lookback_s=sched.initial_lookback_days * 86400,
        auth_recheck_s=sched.auth_recheck_s,
    )


@cli.command()
@CONFIG_OPTION
def status(config_dir: Path) -> None:
    """What /api/status says, as a table: read from the store, so it works with the daemon down."""
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    from sync.budgets import describe_budgets
    from sync.db import Database, SchemaOutOfDateError, ensure_schema
    from sync.status import channel_statuses

    app_config = _load_or_exit(config_dir)
    _configure_logging(app_config)
    db = Database(app_config.database_url)
    try:
        ensure_schema(db, auto_migrate=False)
        with db.read_session() as session:
            statuses = channel_statuses(session, datetime.now(UTC))
    except SchemaOutOfDateError as exc:
        click.echo(str(exc), err=True)
        sys.exit(3)
    finally:
        db.dispose()
    table = Table(title="channel-sync status")
    for heading in ("channel", "kind", "state", "last poll", "lag", "today", "jobs"):
        table.add_column(heading, justify="right" if heading in ("lag", "today") else "left")
    table.add_column("listings", overflow="fold")
    table.add_column("daily budgets", overflow="fold")
    table.add_column("last error", overflow="fold")
    for row in statuses:
        table.add_row(
            row.name,
            row.kind,
            row.state,
            row.last_poll_at.strftime("%Y-%m-%d %H:%M:%S UTC") if row.last_poll_at else "never",
            f"{row.lag_s:.0f} s" if row.lag_s is not None else "-",
            str(row.orders_today),
            f"{row.jobs_pending} pending, {row.jobs_dead} dead",
            _describe_listings(row.listings),
            describe_budgets(row.budgets),
            row.last_error or "",
        )
    Console(width=160).print(table if statuses else "no channels in the store yet")


def _describe_listings(listings: dict[str, Any] | None) -> str:
    if not listings:
        return "-"
    unknown = listings.get("unknown_skus")
    if unknown is None:  # no reconcile has read the channel's listings yet
        return f"{listings['bound']} bound, not read yet"
    return (
        f"{listings['bound']} bound, {listings['missing_skus']} of ours missing, {unknown} not ours"
    )


# ---- connect: a channel's OAuth credential (Shopify install, eBay consent) --------------------

if TYPE_CHECKING:
    from config.pending import PendingChannel
    from config.settings import MainSettings
    from sync.connect import Accept, CallbackParams, Obtained


def _connect_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options both connect commands take."""
    for option in reversed(
        (
            click.option(
                "--channel", required=True, metavar="NAME", help="The channel to connect."
            ),
            click.option(
                "--port",
                type=click.IntRange(0, 65535),
                default=None,
                help="Listen for the callback on this port instead of the webhook listener's "
                "(0: any free port).",
            ),
            click.option(
                "--timeout",
                "timeout_s",
                type=click.FloatRange(min=1),
                default=600.0,
                show_default=True,
                help="Seconds to wait for the browser to come back.",
            ),
            CONFIG_OPTION,
        )
    ):
        command = option(command)
    return command


def _pending_or_exit(config_dir: Path, channel: str, kind: str, key: str) -> PendingChannel:
    from config.loader import ConfigError
    from config.pending import load_pending_channel

    try:
        return load_pending_channel(config_dir, channel, kind=kind, key=key)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(EXIT_CONFIG)


def _connect_by_callback(
    pending: PendingChannel,
    *,
    kind: str,
    key: str,
    port: int | None,
    timeout_s: float,
    start: Callable[[str], tuple[str, str]],
    accept: Accept,
) -> None:
    """Listen for the callback, print where to send the seller, wait, store, say what to write.

    `start(callback_url)` answers the URL the seller opens and a line about where the browser
    comes back; `accept(params)` checks a callback and exchanges its code."""
    from connectors.errors import ConnectorError
    from sync.connect import CallbackServer, callback_path, connected_message, secret_file
    from sync.service import Listener

    _configure_logging_level(pending.main)
    hooks = pending.main.listeners.webhooks
    name = pending.channel.name
    target = secret_file(pending.main.state_dir, name, key)
    listener = Listener("the connect callback", hooks.host, hooks.port if port is None else port)
    try:
        server = CallbackServer(listener, callback_path(kind, name))
    except OSError as exc:
        click.echo(f"{exc} (is the daemon running there? stop it, or pass --port)", err=True)
        sys.exit(1)
    try:
        url, where = start(server.local_url)
        click.echo(
            f"open this address in a browser signed in to the seller's account:\n\n  {url}\n"
        )
        click.echo(f"{where}\nwaiting up to {timeout_s:g} s (Ctrl-C to give up)...", err=True)
        obtained = asyncio.run(
            server.receive(
                accept, target, timeout_s=timeout_s, say=lambda line: click.echo(line, err=True)
            )
        )
    except TimeoutError:
        click.echo(f"no callback within {timeout_s:g} s: nothing was stored", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("given up: nothing was stored", err=True)
        sys.exit(130)
    except ConnectorError as exc:
        click.echo(f"not connected: {exc}; nothing was stored", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"connected, but the credential cannot be stored: {exc}", err=True)
        sys.exit(1)
    finally:
        server.close()
    click.echo(
        connected_message(
            channel=name,
            key=key,
            target=target,
            reference_now=pending.reference,
            note=obtained.note,
        )
    )


def _configure_logging_level(main: MainSettings) -> None:
    from config.secrets import known_secret_values
    from sync.logs import configure_logging

    configure_logging(main.logging.level, main.logging.format, known_secret_values)


@cli.group("shopify")
def shopify_group() -> None:
    """Shopify channels: `connect` installs the app for an access token."""


@shopify_group.command("connect")
@_connect_options
@click.option(
    "--redirect-uri",
    default=None,
    help="The callback as the seller's browser reaches it (default: beside the channel's "
    "webhook_url, else the listener's own address).",
)
def shopify_connect(
    channel: str, port: int | None, timeout_s: float, config_dir: Path, redirect_uri: str | None
) -> None:
    """Install the app on the channel's shop for an offline access token, kept 0600 in the
    state directory; print the `file:` reference for the channel file (never the token)."""
    import secrets

    from config.channels import ShopifyChannel
    from config.secrets import register_secret_value
    from connectors.http import make_client
    from connectors.shopify import oauth
    from sync.connect import Obtained, callback_path, public_callback_url

    pending = _pending_or_exit(config_dir, channel, "shopify", "access_token")
    config = pending.channel
    assert isinstance(config, ShopifyChannel)
    if config.client_id is None:
        click.echo(f"{pending.file}: client_id: set the app's client id (API key)", err=True)
        sys.exit(EXIT_CONFIG)
    app = oauth.ShopifyApp(
        client_id=config.client_id,
        client_secret=config.webhook_secrets[0].reveal(),  # the app's current client secret
        shop=config.shop,
        base_url=str(config.api_base_url) if config.api_base_url else None,
    )
    state = secrets.token_urlsafe(24)

    def start(local_url: str) -> tuple[str, str]:
        public = public_callback_url(
            str(config.webhook_url) if config.webhook_url else None,
            callback_path("shopify", config.name),
        )
        redirect = redirect_uri or public or local_url
        where = f"Shopify sends the browser back to {redirect}: list it in the app's allowed "
        where += "redirection URLs" + ("" if redirect == local_url else f" (served at {local_url})")
        return oauth.install_url(app, redirect, state=state), where

    async def accept(params: CallbackParams) -> Obtained:
        code = oauth.check_callback(app, params, state=state)
        async with make_client(base_url=app.admin_root, channel=config.name) as http:
            grant = await oauth.exchange_code(http, app, code, channel=config.name)
        register_secret_value(grant.access_token)  # redacted from any log line from now on
        note = f"scopes granted: {', '.join(sorted(grant.scopes)) or '-'}"
        missing = oauth.missing_scopes(grant.scopes)
        if missing:
            note += f"\nwarning: not granted {', '.join(missing)}: calls needing them will fail"
        return Obtained(grant.access_token, note)

    _connect_by_callback(
        pending,
        kind="shopify",
        key="access_token",
        port=port,
        timeout_s=timeout_s,
        start=start,
        accept=accept,
    )


@cli.group("ebay")
def ebay_group() -> None:
    """eBay channels: `connect` gets the seller's consent for a refresh token."""


@ebay_group.command("connect")
@_connect_options
@click.option(
    "--code",
    default=None,
    help="The code from the page eBay sent the browser to (or that page's whole address): "
    "exchange it without listening.",
)
def ebay_connect(
    channel: str, port: int | None, timeout_s: float, config_dir: Path, code: str | None
) -> None:
    """Get the seller's consent for a refresh token, kept 0600 in the state directory; print
    the `file:` reference for the channel file (never the token)."""
    import secrets
    from datetime import UTC, datetime, timedelta

    from config.channels import EbayChannel
    from config.secrets import register_secret_value
    from connectors.ebay import auth, consent, const
    from connectors.errors import ConnectorError
    from connectors.http import make_client
    from sync.connect import Obtained, connected_message, secret_file, write_secret

    pending = _pending_or_exit(config_dir, channel, "ebay", "refresh_token")
    config = pending.channel
    assert isinstance(config, EbayChannel)
    if config.ru_name is None:
        click.echo(f"{pending.file}: ru_name: set the application's RuName", err=True)
        sys.exit(EXIT_CONFIG)
    ru_name = config.ru_name
    app = auth.OAuthApp(
        client_id=config.client_id,
        client_secret=config.client_secret.reveal(),
        token_url=str(config.identity_url or const.IDENTITY_URL),
    )

    async def exchange(authorization_code: str) -> Obtained:
        base = str(config.api_base_url or const.API_BASE_URL)
        async with make_client(base_url=base, channel=config.name) as http:
            grant = await auth.exchange_code(
                http, app, authorization_code, ru_name, channel=config.name
            )
        assert grant.refresh_token is not None  # exchange_code refuses a grant without one
        register_secret_value(grant.refresh_token)  # redacted from any log line from now on
        note = ""
        if grant.refresh_token_expires_in_s:
            until = datetime.now(UTC) + timedelta(seconds=grant.refresh_token_expires_in_s)
            note = f"it lasts until about {until:%Y-%m-%d}: connect again before then"
        return Obtained(grant.refresh_token, note)

    if code is not None:
        _configure_logging_level(pending.main)
        target = secret_file(pending.main.state_dir, config.name, "refresh_token")
        try:
            obtained = asyncio.run(exchange(consent.code_from_paste(code)))
        except consent.ConsentRefusedError as exc:
            raise click.BadParameter(str(exc), param_hint="--code") from exc
        except ConnectorError as exc:
            click.echo(f"not connected: {exc}; nothing was stored", err=True)
            sys.exit(1)
        try:
            write_secret(target, obtained.secret)
        except OSError as exc:
            click.echo(f"connected, but the credential cannot be stored: {exc}", err=True)
            sys.exit(1)
        click.echo(
            connected_message(
                channel=config.name,
                key="refresh_token",
                target=target,
                reference_now=pending.reference,
                note=obtained.note,
            )
        )
        return

    state = secrets.token_urlsafe(24)

    def start(local_url: str) -> tuple[str, str]:
        url = auth.consent_url(
            config.client_id,
            ru_name,
            state=state,
            base_url=consent.consent_endpoint(
                str(config.api_base_url) if config.api_base_url else None
            ),
        )
        where = (
            f"eBay sends the browser to RuName {ru_name}'s accept URL: set it to this "
            f"listener ({local_url}, or its address behind your proxy); if it points elsewhere, "
            "run again with --code and the address eBay shows"
        )
        return url, where

    async def accept(params: CallbackParams) -> Obtained:
        return await exchange(consent.check_consent_redirect(params, state=state))

    _connect_by_callback(
        pending,
        kind="ebay",
        key="refresh_token",
        port=port,
        timeout_s=timeout_s,
        start=start,
        accept=accept,
    )


def main() -> None:
    """Run the command line."""
    cli()


if __name__ == "__main__":
    main()
