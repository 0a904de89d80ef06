"""A `kind = "reference"` channel file: validated, and turned into a connector by the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.channels import ReferenceChannel
from config.loader import ConfigError, load_config
from connectors.reference import ReferenceConnector
from connectors.registry import connector_for
from tests.support.daemon import DaemonConfig

pytestmark = pytest.mark.anyio
ENV = {"ADMIN_TOKEN_VAR": "admin-token-value", "REF_TOKEN": "ref-token-value-91"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def write(tmp_path: Path, body: str) -> Path:
    config = DaemonConfig(
        root=tmp_path, database_url=None, admin_token_env="ADMIN_TOKEN_VAR", channels={"ref": body}
    )
    return config.write()


async def test_a_reference_file_builds_a_connector_with_its_capabilities(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        'kind = "reference"\nbase_url = "http://127.0.0.1:9004/ref"\ntoken = "env:REF_TOKEN"\n'
        "compare_and_swap = true\nidempotent_fulfillment = true\nmax_stock_batch = 20\n"
        "max_in_flight = 3\npage_size = 10\n",
    )
    channel = load_config(root, env=ENV).channels["ref"]
    assert isinstance(channel, ReferenceChannel)
    assert "ref-token-value-91" not in repr(channel)

    factory = connector_for("reference")
    assert factory is not None
    connector = factory(channel)
    try:
        assert isinstance(connector, ReferenceConnector)
        assert connector.name == "ref"
        caps = connector.capabilities
        assert (caps.max_stock_batch, caps.max_in_flight) == (20, 3)
        assert caps.supports_compare_and_swap and caps.idempotent_fulfillment
        assert not caps.supports_webhooks
        assert connector.page_size == 10
    finally:
        await connector.aclose()


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('base_url = "not a url"\ntoken = "env:REF_TOKEN"\n', "base_url"),
        ('base_url = "http://127.0.0.1:1/ref"\n', "token"),
        (
            'base_url = "http://127.0.0.1:1/ref"\ntoken = "env:REF_TOKEN"\nmax_stock_batch = 0\n',
            "max",
        ),
        (
            'base_url = "http://127.0.0.1:1/ref"\ntoken = "env:REF_TOKEN"\ntimeout_s = -1\n',
            "timeout",
        ),
        ('base_url = "http://127.0.0.1:1/ref"\ntoken = "env:NOT_SET"\n', "token"),
    ],
)
def test_a_bad_reference_file_is_refused_naming_the_key(
    tmp_path: Path, line: str, key: str
) -> None:
    root = write(tmp_path, f'kind = "reference"\n{line}')
    with pytest.raises(ConfigError) as caught:
        load_config(root, env=ENV)
    problems = [str(p) for p in caught.value.problems]
    assert any("ref.toml" in p and key in p for p in problems), problems
