"""channel-sync entry point: the command line and the process lifecycle around the engine."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sys
from importlib.metadata import version as package_version
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from config.loader import AppConfig
    from sync.scheduler import SchedulerSettings
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
    help="Where the demo keeps its SQLite store, admin token and demo.json.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds (default: run until Ctrl-C).",
)
def demo(state_dir: Path, duration: float | None) -> None:
    """Run the daemon on a SQLite file with the demo config, and say how to reach it."""
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    token_file = state_dir / "admin-token"
    if not token_file.exists():
        token_file.touch(mode=0o600)
        token_file.write_text(secrets.token_urlsafe(24))
    os.environ["CHANNEL_SYNC_DEMO_ADMIN_TOKEN"] = token_file.read_text().strip()
    os.environ["CHANNEL_SYNC_STATE_DIR"] = str(state_dir)
    app_config = _load_or_exit(Path(str(files("config") / "demo")))

    def announce(service: Service) -> None:
        assert service.admin_address is not None
        host, port = service.admin_address
        admin_url = f"http://{host}:{port}"
        token = os.environ["CHANNEL_SYNC_DEMO_ADMIN_TOKEN"]
        info = {"admin_url": admin_url, "admin_token": token, "channels": {}}
        demo_json = state_dir / "demo.json"
        demo_json.touch(mode=0o600)
        demo_json.write_text(json.dumps(info, indent=2) + "\n")
        click.echo(
            "\n"
            f"channel-sync demo is running (store: {state_dir / 'channel-sync.db'})\n"
            f"  admin API   {admin_url}   token in {token_file}\n"
            f"  try         curl {admin_url}/healthz\n"
            f'              curl -H "Authorization: Bearer $(cat {token_file})" '
            f"{admin_url}/api/status\n"
            f"  details     {demo_json}\n"
            "Press Ctrl-C to stop.\n",
            err=True,
        )
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, service.request_stop)

    sys.exit(_serve(app_config, on_ready=announce))


@cli.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address.")
@click.option("--shopify-port", type=int, default=0, help="Port of the Shopify store (0: any).")
@click.option("--reference-port", type=int, default=0, help="Port of the reference one (0: any).")
@click.option(
    "--ready-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the addresses, tokens and secrets here (mode 0600) once all listen.",
)
def sandbox_command(
    host: str, shopify_port: int, reference_port: int, ready_file: Path | None
) -> None:
    """Only the sandbox marketplaces (Shopify, reference) on loopback, printing their addresses;
    until Ctrl-C."""
    from sandbox.launcher import SandboxPlan, run_sandboxes

    plan = SandboxPlan(
        host=host, shopify_port=shopify_port, reference_port=reference_port, ready_file=ready_file
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
    main = app_config.main
    settings = ServiceSettings(
        webhooks=Listener("webhooks", main.listeners.webhooks.host, main.listeners.webhooks.port),
        admin=Listener("admin", main.listeners.admin.host, main.listeners.admin.port),
        admin_token=main.admin.token.reveal(),
        drain_deadline_s=main.shutdown.drain_deadline_s,
        auto_migrate=main.database.auto_migrate,
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
            )
            for name, ch in app_config.channels.items()
        },
        inbox_retention_days=main.retention.webhook_inbox_days,
        events_retention_days=main.retention.events_days,
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
            handlers[name] = factory(channel)
    return handlers


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
            row.last_error or "",
        )
    Console(width=160).print(table if statuses else "no channels in the store yet")


def main() -> None:
    """Run the command line."""
    cli()


if __name__ == "__main__":
    main()
