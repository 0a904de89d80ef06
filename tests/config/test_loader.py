"""load_config in-process: the public result, defaults, relative paths and cross-file checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from config.channels import (
    CHANNEL_KINDS,
    AmazonChannel,
    ChannelConfig,
    EbayChannel,
    ReferenceChannel,
    ShopifyChannel,
)
from config.loader import AppConfig, ConfigError, Problem, load_config
from config.secrets import known_secret_values
from config.settings import MainSettings

MAIN = '[admin]\ntoken = "env:ADMIN"\n'
SHOP = (
    'kind = "shopify"\nshop = "s.myshopify.com"\naccess_token = "env:TOK"\n'
    'webhook_secrets = ["env:TOK"]\n'
)
ENV = {"ADMIN": "admin-value", "TOK": "tok-value"}


def _write(config_dir: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = config_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return config_dir


def _problems(config_dir: Path, env: dict[str, str] = ENV) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        load_config(config_dir, env=env)
    assert str(caught.value) == "\n".join(str(p) for p in caught.value.problems)
    return caught.value.problems


def test_minimal_config_and_defaults(tmp_path: Path) -> None:
    _write(tmp_path, {"channel-sync.toml": MAIN})
    config = load_config(tmp_path, env=ENV)
    assert isinstance(config, AppConfig)
    assert config.config_dir == tmp_path
    assert config.channels == {}
    main = config.main
    assert (main.listeners.webhooks.host, main.listeners.webhooks.port) == ("127.0.0.1", 8080)
    assert main.listeners.webhooks.max_body_bytes == 1024 * 1024
    assert (main.listeners.admin.host, main.listeners.admin.port) == ("127.0.0.1", 8081)
    assert main.shutdown.drain_deadline_s == 20
    assert main.schedules.heartbeat_s < main.schedules.lease_ttl_s
    assert main.retention.buyer_data_days == 30
    assert (main.logging.level, main.logging.format) == ("INFO", "auto")
    assert main.database.url is None and main.database.auto_migrate is False


def test_relative_paths_resolve_against_config_dir(tmp_path: Path) -> None:
    secret = tmp_path / "secrets" / "tok"
    _write(
        tmp_path,
        {
            "channel-sync.toml": 'state_dir = "state"\n[database]\nurl = "sqlite:///data/s.db"\n'
            + MAIN,
            "channels/shop.toml": SHOP.replace(
                'access_token = "env:TOK"', 'access_token = "file:secrets/tok"'
            ),
            "secrets/tok": "from-file\n",
        },
    )
    secret.chmod(0o600)
    config = load_config(tmp_path, env=ENV)
    assert config.main.state_dir == tmp_path / "state"
    assert config.database_url == f"sqlite+pysqlite:///{tmp_path}/data/s.db"
    channel = config.channels["shop"]
    assert isinstance(channel, ShopifyChannel)
    assert channel.access_token.reveal() == "from-file"


def test_default_database_is_sqlite_under_state_dir(tmp_path: Path) -> None:
    _write(tmp_path, {"channel-sync.toml": f'state_dir = "{tmp_path}/st"\n' + MAIN})
    config = load_config(tmp_path, env=ENV)
    assert config.database_url == f"sqlite+pysqlite:///{tmp_path}/st/channel-sync.db"
    assert config.main.database_url == config.database_url


def test_channel_names_default_to_stem_and_are_sorted(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "channel-sync.toml": MAIN,
            "channels/zeta.toml": SHOP,
            "channels/alpha.toml": SHOP + 'name = "main-store"\n',
            "channels/README.md": "ignored",
        },
    )
    config = load_config(tmp_path, env=ENV)
    assert list(config.channels) == ["main-store", "zeta"]
    assert config.channels["zeta"].name == "zeta"


def test_schedule_defaults_come_from_main_file(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "channel-sync.toml": MAIN + "[schedules]\ndefault_poll_interval_s = 45\n",
            "channels/a.toml": SHOP,
            "channels/b.toml": SHOP + "[schedule]\npoll_interval_s = 5\n",
        },
    )
    channels = load_config(tmp_path, env=ENV).channels
    assert channels["a"].schedule.poll_interval_s == 45
    assert channels["a"].schedule.reconcile_interval_s == 900
    assert channels["b"].schedule.poll_interval_s == 5


def test_bad_names_and_missing_kind(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "channel-sync.toml": MAIN,
            "channels/Big Shop.toml": SHOP,
            "channels/upper.toml": SHOP + 'name = "SHOP"\n',
            "channels/nokind.toml": 'name = "x"\n',
        },
    )
    found = {(p.file.name, p.key): p.message for p in _problems(tmp_path)}
    assert "lowercase" in found[("Big Shop.toml", "name")]
    assert "lowercase" in found[("upper.toml", "name")]
    assert found[("nokind.toml", "kind")].startswith("missing required key; known kinds")


def test_problems_from_main_and_all_channels_together(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "channel-sync.toml": "[listeners.admin]\nport = 8080\n",
            "channels/a.toml": SHOP + "[stock]\nbuffer = -1\n",
            "channels/b.toml": 'kind = "amazon"\n',
        },
    )
    keys = {(p.file.name, p.key) for p in _problems(tmp_path)}
    assert ("channel-sync.toml", "admin") in keys
    assert ("channel-sync.toml", "listeners.admin") in keys  # shares the webhook port
    assert ("a.toml", "stock.buffer") in keys
    assert {("b.toml", k) for k in ("seller_id", "region", "refresh_token")} <= keys


def test_amazon_caps_buyer_data_retention(tmp_path: Path) -> None:
    amazon = (
        'kind = "amazon"\nseller_id = "S"\nregion = "eu"\nmarketplace_ids = ["A1PA6795UKMFR9"]\n'
        'lwa_client_id = "c"\nlwa_client_secret = "env:TOK"\nrefresh_token = "env:TOK"\n'
    )
    _write(
        tmp_path,
        {
            "channel-sync.toml": MAIN + "[retention]\nbuyer_data_days = 60\n",
            "channels/amz.toml": amazon,
        },
    )
    [problem] = _problems(tmp_path)
    assert (problem.file.name, problem.key) == ("channel-sync.toml", "retention.buyer_data_days")
    (tmp_path / "channel-sync.toml").write_text(MAIN)
    assert isinstance(load_config(tmp_path, env=ENV).channels["amz"], AmazonChannel)


def test_listener_hosts_and_free_port(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "channel-sync.toml": MAIN + '[listeners.webhooks]\nhost = "::1"\nport = 0\n'
            '[listeners.admin]\nhost = "localhost"\nport = 0\n[logging]\nlevel = "debug"\n'
        },
    )
    main = load_config(tmp_path, env=ENV).main
    assert main.listeners.webhooks.host == "::1"
    assert main.listeners.admin.port == 0
    assert main.logging.level == "DEBUG"


def test_database_password_is_registered_for_redaction(tmp_path: Path) -> None:
    _write(tmp_path, {"channel-sync.toml": MAIN + '[database]\nurl = "postgres://u:pw-5813@h/d"\n'})
    assert load_config(tmp_path, env=ENV).database_url == "postgresql+psycopg://u:pw-5813@h/d"
    assert "pw-5813" in known_secret_values()


def test_registry_lists_the_kinds() -> None:
    assert {
        "shopify": ShopifyChannel,
        "amazon": AmazonChannel,
        "ebay": EbayChannel,
        "reference": ReferenceChannel,
    } == CHANNEL_KINDS
    assert all(issubclass(model, ChannelConfig) for model in CHANNEL_KINDS.values())


def _models(model: type[BaseModel]) -> set[type[BaseModel]]:
    found = {model}
    for field in model.model_fields.values():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found |= _models(annotation)
    return found


def test_every_setting_is_described_and_forbids_extras() -> None:
    models: set[type[BaseModel]] = _models(MainSettings)
    for kind in CHANNEL_KINDS.values():
        models |= _models(kind)
    for model in models:
        assert model.model_config.get("extra") == "forbid", model
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
