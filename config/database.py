"""The ``[database]`` table: which store to use, checked with ``sync.db.normalize_url``."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator
from pydantic_core import PydanticCustomError
from sqlalchemy.engine import URL, make_url

from config._base import MODEL_CONFIG
from config._context import resolve_path
from config.secrets import register_secret_value

SQLITE_FILE_NAME = "channel-sync.db"
_URL_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})


def normalize_database_url(url: str) -> str:
    """Check ``url`` with sync.db.normalize_url; anchor a relative SQLite path in the config dir."""
    from sync.db import normalize_url  # imported late: sync.db pulls in the whole store

    try:
        parsed: URL = normalize_url(url)
    except ValueError as exc:
        # normalize_url promises not to echo the password; scrub it anyway, to be sure.
        raise PydanticCustomError(
            "database_url", "{reason}", {"reason": _without_password(str(exc), url)}
        ) from None
    for key, value in parsed.query.items():
        if key.lower() in _URL_SECRET_QUERY_KEYS:
            for item in (value,) if isinstance(value, str) else value:
                register_secret_value(item)
    if parsed.password:
        register_secret_value(str(parsed.password))
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and not database.startswith("file:"):
        parsed = parsed.set(database=str(resolve_path(Path(database))))
    return parsed.render_as_string(hide_password=False)


def _without_password(text: str, url: str) -> str:
    try:
        password = make_url(url).password
    except Exception:  # unparsable here too, so normalize_url gave its fixed message
        return text
    return text.replace(str(password), "***") if password else text


class DatabaseSettings(BaseModel):
    """Where the store lives: a SQLite file under the state dir unless ``url`` says otherwise."""

    model_config = MODEL_CONFIG

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL: sqlite:///PATH or postgresql+psycopg://...; "
        "unset = SQLite file channel-sync.db in state_dir.",
    )
    auto_migrate: bool = Field(
        default=False, description="Bring the schema up to date at start instead of refusing."
    )
    pool_size: int = Field(default=5, ge=1, description="Connections kept open (PostgreSQL).")
    start_wait_s: float = Field(
        default=45.0,
        ge=0,
        le=3600,
        description="PostgreSQL: how long the daemon waits at start for a server that refuses "
        "connections or is still recovering, before it exits 5 (under systemd's start timeout, "
        "so that Restart= tries again).",
    )

    @field_validator("url")
    @classmethod
    def _normalize(cls, url: str | None) -> str | None:
        return None if url is None else normalize_database_url(url)

    def effective_url(self, state_dir: Path) -> str:
        """The URL to connect to: ``url``, or the SQLite file under ``state_dir``."""
        if self.url is not None:
            return self.url
        default = URL.create("sqlite", database=str(state_dir / SQLITE_FILE_NAME))
        return normalize_database_url(default.render_as_string(hide_password=False))
