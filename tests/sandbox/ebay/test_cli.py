"""The runner's command line: bad arguments are refused naming them, before anything listens."""

from __future__ import annotations

import pytest

from sandbox.ebay.cli import main, parse_listing
from sandbox.ebay.model import World


@pytest.mark.parametrize(
    "argv",
    [
        ["--host", "10.1.2.3"],
        ["--listing", "A=many"],
        ["--variation", "A=1"],
        ["--quota", "shopping=5"],
        ["--notify-url", "http://127.0.0.1:9/hooks"],
        ["--notify-url", "http://127.0.0.1:9/hooks", "--verification-token", "short"],
        ["--listing", "A=1", "--inventory-listing", "A=2"],
    ],
)
def test_bad_arguments_exit_2_naming_the_problem(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--port", "0", *argv])
    assert stopped.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_listing_specs_name_sku_units_price_and_group() -> None:
    listing = parse_listing("SHIRT:SHIRT-M=4@19.5", World.TRADING, grouped=True)
    assert (listing.group, listing.sku, listing.quantity, str(listing.price)) == (
        "SHIRT",
        "SHIRT-M",
        4,
        "19.5",
    )
    assert parse_listing("MUG=3", World.INVENTORY).world is World.INVENTORY
