"""Alembic environment: migrate the store over the connection `sync.migrate` passes in."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from sync.models import Base
from sync.types import Money, UTCDateTime

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render the store's own column types by name, so autogenerate output imports them."""
    if type_ == "type" and isinstance(obj, Money | UTCDateTime):
        autogen_context.imports.add("from sync.types import Money, UTCDateTime")
        return f"{type(obj).__name__}()"
    return False


def run_migrations(connection: Connection) -> None:
    """Run the pending scripts inside the caller's transaction."""
    is_sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite alters a table by copying it: batch mode does that for ALTER operations.
        render_as_batch=is_sqlite,
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = config.attributes.get("connection")
if context.is_offline_mode() or not isinstance(_connection, Connection):
    raise RuntimeError(
        "channel-sync migrations run only through `channel-sync migrate --config DIR` "
        "(sync.migrate.upgrade), which passes the store's connection"
    )
run_migrations(_connection)
