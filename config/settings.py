"""The main file, ``channel-sync.toml``: database, listeners, admin token, schedules, retention.

Read with pydantic-settings: init kwargs override ``CHANNEL_SYNC_...`` environment variables
(nested with ``__``), which override the TOML file, which overrides the defaults.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from config._base import MODEL_CONFIG
from config._context import current_context, resolve_path
from config.database import DatabaseSettings
from config.secrets import Secret

ENV_PREFIX = "CHANNEL_SYNC_"
ENV_NESTED_DELIMITER = "__"
DEFAULT_STATE_DIR = Path("/var/lib/channel-sync")


def _check_host(host: str) -> str:
    if host == "localhost":
        return host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise PydanticCustomError(
            "listen_host", "must be an IP address or 'localhost' (e.g. 127.0.0.1, ::1, 0.0.0.0)"
        ) from None
    return host


ListenHost = Annotated[str, AfterValidator(_check_host)]
ListenPort = Annotated[int, Field(ge=0, le=65535)]


class WebhookListenerSettings(BaseModel):
    """Where the webhook app listens (behind the seller's TLS proxy)."""

    model_config = MODEL_CONFIG

    host: ListenHost = Field(default="127.0.0.1", description="IP address or 'localhost'.")
    port: ListenPort = Field(default=8080, description="TCP port; 0 picks a free port.")
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1, description="Larger webhook bodies are refused with 413."
    )
    read_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Seconds a request may take to arrive whole (headers and body) from its "
        "first byte; slower ones get 408 and are closed, so stalled or trickling clients cannot "
        "hold connections (marketplaces send each delivery at once and give up after seconds).",
    )


def is_loopback_host(host: str) -> bool:
    """True for 'localhost' and loopback IPs (127.0.0.0/8, ::1, ::ffff:127.x)."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class AdminListenerSettings(BaseModel):
    """Where the admin app listens: keep it on loopback, or give it TLS.

    The TLS keys and the override come first so that `host`, checked last, can see them."""

    model_config = MODEL_CONFIG

    tls_certfile: Path | None = Field(
        default=None,
        description="PEM certificate (chain): serve the admin API over HTTPS. Relative paths "
        "resolve against the config directory.",
    )
    tls_keyfile: Path | None = Field(
        default=None,
        validate_default=True,
        description="PEM private key of tls_certfile; only its owner may read it (chmod 600).",
    )
    allow_insecure_remote: bool = Field(
        default=False,
        description="Allow a non-loopback host without TLS: the token crosses the network in "
        "clear. Only behind a network you trust (or a TLS proxy on another machine).",
    )
    host: ListenHost = Field(
        default="127.0.0.1",
        description="IP address or 'localhost'; a non-loopback address needs tls_certfile and "
        "tls_keyfile, or allow_insecure_remote = true.",
    )
    port: ListenPort = Field(default=8081, description="TCP port; 0 picks a free port.")
    read_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds a request may take to arrive whole (headers and body) from its "
        "first byte; slower ones get 408 and are closed. Longer than the webhook listener's: "
        "a stock import may upload a large file over a slow link.",
    )

    @field_validator("tls_certfile")
    @classmethod
    def _certfile_exists(cls, path: Path | None) -> Path | None:
        if path is None:
            return None
        path = resolve_path(path)
        if not path.is_file():
            raise PydanticCustomError("tls_file", "no such file: {path}", {"path": str(path)})
        return path

    @field_validator("tls_keyfile")
    @classmethod
    def _keyfile_private(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if "tls_certfile" not in info.data:
            return path  # the certificate's own problem is reported
        has_cert = info.data["tls_certfile"] is not None
        if path is None:
            if has_cert:
                raise PydanticCustomError("tls_pair", "required when tls_certfile is set")
            return None
        if not has_cert:
            raise PydanticCustomError("tls_pair", "set tls_certfile too (the key's certificate)")
        path = resolve_path(path)
        if not path.is_file():
            raise PydanticCustomError("tls_file", "no such file: {path}", {"path": str(path)})
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise PydanticCustomError(
                "tls_key_mode",
                "{path} is readable by others (mode {mode}): run chmod 600 {path}",
                {"path": str(path), "mode": f"{mode:04o}"},
            )
        return path

    @field_validator("host")
    @classmethod
    def _loopback_unless_protected(cls, host: str, info: ValidationInfo) -> str:
        settled = ("tls_certfile", "tls_keyfile", "allow_insecure_remote")
        if is_loopback_host(host) or any(key not in info.data for key in settled):
            return host  # loopback, or a problem of the other keys is reported instead
        if info.data["tls_keyfile"] is not None or info.data["allow_insecure_remote"]:
            return host
        raise PydanticCustomError(
            "admin_not_loopback",
            "{host} is not a loopback address: the admin API and its token would be reachable "
            "from other machines in clear; set listeners.admin.tls_certfile and tls_keyfile, or "
            "listeners.admin.allow_insecure_remote = true",
            {"host": host},
        )

    @property
    def is_tls(self) -> bool:
        """Whether the admin API is served over HTTPS."""
        return self.tls_certfile is not None and self.tls_keyfile is not None


class ListenersSettings(BaseModel):
    """The two HTTP listeners."""

    model_config = MODEL_CONFIG

    webhooks: WebhookListenerSettings = Field(
        default_factory=WebhookListenerSettings, description="Webhook receiver."
    )
    admin: AdminListenerSettings = Field(
        default_factory=AdminListenerSettings, description="Admin API, metrics and health."
    )

    @field_validator("admin")
    @classmethod
    def _distinct_ports(
        cls, admin: AdminListenerSettings, info: ValidationInfo
    ) -> AdminListenerSettings:
        webhooks = info.data.get("webhooks")
        if webhooks is not None and admin.port != 0 and admin.port == webhooks.port:
            raise PydanticCustomError(
                "listen_port_clash",
                "admin and webhook listeners cannot share port {port}",
                {"port": admin.port},
            )
        return admin


class AdminSettings(BaseModel):
    """The admin API's bearer token."""

    model_config = MODEL_CONFIG

    token: Secret = Field(description="Bearer token for the admin API (a secret reference).")


class ShutdownSettings(BaseModel):
    """Graceful stop: stop taking work, drain, exit."""

    model_config = MODEL_CONFIG

    drain_deadline_s: float = Field(
        default=20.0, gt=0, description="Seconds to let running jobs finish before cancelling them."
    )


class ScheduleSettings(BaseModel):
    """How often things run; per-channel intervals default to these."""

    model_config = MODEL_CONFIG

    outbox_interval_s: float = Field(default=1.0, gt=0, description="Outbox poll period.")
    default_poll_interval_s: float = Field(
        default=60.0, gt=0, description="Order poll period for channels that set none."
    )
    default_reconcile_interval_s: float = Field(
        default=900.0, gt=0, description="Full stock reconcile period for channels that set none."
    )
    lease_ttl_s: float = Field(
        default=20.0,
        gt=0,
        description="A lease not renewed for this long can be taken over (2 heartbeats: a dead "
        "instance's jobs move within 2 heartbeats of its death).",
    )
    heartbeat_s: float = Field(
        default=10.0, gt=0, description="Lease renewal period; must be below lease_ttl_s."
    )
    reconcile_overlap_s: float = Field(
        default=3600.0,
        ge=0,
        description="Reconcile re-reads orders from the poll checkpoint minus this many seconds.",
    )
    initial_lookback_days: float = Field(
        default=30.0,
        gt=0,
        description="A channel's first poll reads orders updated in this many past days.",
    )
    auth_recheck_s: float = Field(
        default=300.0,
        gt=0,
        description="How often a channel whose credentials were refused is checked again.",
    )

    @field_validator("heartbeat_s")
    @classmethod
    def _below_lease_ttl(cls, heartbeat: float, info: ValidationInfo) -> float:
        ttl = info.data.get("lease_ttl_s")
        if ttl is not None and heartbeat >= ttl:
            raise PydanticCustomError(
                "heartbeat",
                "must be below lease_ttl_s ({ttl}) or leases expire while held",
                {"ttl": ttl},
            )
        return heartbeat


class OutboxSettings(BaseModel):
    """How outbox jobs (stock, shipments, cancels) are claimed and retried."""

    model_config = MODEL_CONFIG

    lease_s: float = Field(
        default=120.0,
        gt=0,
        description="A claimed job whose worker died is taken again after this many seconds.",
    )
    retry_base_s: float = Field(
        default=1.0, gt=0, description="First retry delay ceiling; doubles per try (jittered)."
    )
    retry_cap_s: float = Field(default=600.0, gt=0, description="Largest retry delay ceiling.")
    max_attempts: int = Field(
        default=12, ge=1, description="Tries before a job is dead (shown in /api/jobs?state=dead)."
    )


class RetentionSettings(BaseModel):
    """How long data is kept before the retention job deletes it."""

    model_config = MODEL_CONFIG

    webhook_inbox_days: int = Field(default=14, ge=1, description="Raw webhook deliveries.")
    events_days: int = Field(default=90, ge=1, description="Order and stock event history.")
    buyer_data_days: int = Field(
        default=30,
        ge=1,
        description="Buyer names, addresses, contacts after delivery (Amazon requires <= 30).",
    )


BUYER_KEY_BYTES = 32


def _check_buyer_key(key: Secret) -> Secret:
    """A buyer-data key is 32 random bytes, base64: refused otherwise, never echoing it."""
    try:
        size = len(base64.b64decode(key.reveal().strip(), validate=True))
    except (binascii.Error, ValueError):
        size = -1
    if size != BUYER_KEY_BYTES:
        got = "not base64" if size < 0 else f"{size} bytes"
        raise PydanticCustomError(
            "buyer_data_key",
            "{reference} must hold {expected} random bytes, base64-encoded (got {got}); "
            "create one with `channel-sync rotate-key --config DIR --new-key-file PATH`",
            {"reference": key.reference, "expected": BUYER_KEY_BYTES, "got": got},
        )
    return key


BuyerKey = Annotated[Secret, AfterValidator(_check_buyer_key)]


class BuyerDataSettings(BaseModel):
    """The key that seals buyers' personal data in the store (sync/sealing.py)."""

    model_config = MODEL_CONFIG

    key: BuyerKey | None = Field(
        default=None,
        description="Secret reference to 32 random bytes, base64. Unset: a key is generated at "
        "STATE_DIR/buyer-data.key on first start (set it explicitly when several instances "
        "share one PostgreSQL store: they must all hold the same key).",
    )
    previous_keys: list[BuyerKey] = Field(
        default_factory=list,
        description="Older keys (secret references), only to open values sealed under them "
        "until `channel-sync rotate-key` has re-sealed them.",
    )


class LoggingSettings(BaseModel):
    """Log level and format."""

    model_config = MODEL_CONFIG

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level written."
    )
    format: Literal["auto", "json", "text"] = Field(
        default="auto", description="auto = json when stderr is not a terminal, else text."
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, level: object) -> object:
        return level.upper() if isinstance(level, str) else level


def _default_state_dir() -> Path:
    # systemd's StateDirectory= sets $STATE_DIRECTORY (colon-separated when there are several).
    value = current_context().env.get("STATE_DIRECTORY", "")
    first = value.split(":", 1)[0]
    return Path(first) if first else DEFAULT_STATE_DIR


class MappingEnvSource(EnvSettingsSource):
    """The ``CHANNEL_SYNC_...`` environment source, reading a given mapping, not os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._env, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class MainSettings(BaseSettings):
    """Everything in ``channel-sync.toml``, after environment overrides."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        env_ignore_empty=True,
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
    )

    state_dir: Path = Field(
        default_factory=_default_state_dir,
        description="Where the SQLite file and other state live: $STATE_DIRECTORY, else "
        "/var/lib/channel-sync; relative paths resolve against the config directory.",
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings, description="The store.")
    listeners: ListenersSettings = Field(
        default_factory=ListenersSettings, description="HTTP listeners."
    )
    admin: AdminSettings = Field(description="Admin API access.")
    shutdown: ShutdownSettings = Field(
        default_factory=ShutdownSettings, description="Graceful stop."
    )
    schedules: ScheduleSettings = Field(
        default_factory=ScheduleSettings, description="Periods of the scheduled jobs."
    )
    outbox: OutboxSettings = Field(
        default_factory=OutboxSettings, description="Outbox claims and retries."
    )
    retention: RetentionSettings = Field(
        default_factory=RetentionSettings, description="Data retention."
    )
    buyer_data: BuyerDataSettings = Field(
        default_factory=BuyerDataSettings, description="Sealing of buyers' personal data."
    )
    logging: LoggingSettings = Field(default_factory=LoggingSettings, description="Logging.")

    @field_validator("state_dir")
    @classmethod
    def _anchor_state_dir(cls, state_dir: Path) -> Path:
        return resolve_path(state_dir)

    @property
    def database_url(self) -> str:
        """The effective database URL (the SQLite default resolved under ``state_dir``)."""
        return self.database.effective_url(self.state_dir)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init kwargs, then the (load context's) environment, then the main TOML file."""
        ctx = current_context()
        return (
            init_settings,
            MappingEnvSource(settings_cls, ctx.env),
            TomlConfigSettingsSource(settings_cls, toml_file=ctx.main_file),
        )
