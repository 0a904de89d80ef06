"""Hostile Trading API answers (a billion-laughs bomb, an external entity) are refused before any
entity is expanded or anything external is read, with a clear error, and nothing in them is
applied; an external DTD is never fetched; ebaysdk never parses an answer itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.base import PushOutcome, StockTarget
from connectors.ebay.trading_xml import parse_answer
from connectors.errors import PermanentError, RetryableError
from tests.connectors.ebay.fake_ebay import NS, FakeEbay, FakeTrading, connect, trading_answer

pytestmark = pytest.mark.anyio
CANARY = "xxe-canary-local-file-3d1f"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _billion_laughs(verb: str) -> bytes:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)
    ]
    return (
        f'<?xml version="1.0"?><!DOCTYPE {verb}Response [{"".join(entities)}]>'
        f'<{verb}Response xmlns="{NS}"><Ack>Success</Ack><ShortMessage>&lol9;</ShortMessage>'
        f"</{verb}Response>"
    ).encode()


def _external_entity(verb: str, secret_file: Path) -> bytes:
    return (
        f'<?xml version="1.0"?><!DOCTYPE {verb}Response '
        f'[<!ENTITY leak SYSTEM "file://{secret_file}">]>'
        f'<{verb}Response xmlns="{NS}"><Ack>Success</Ack><Version>&leak;</Version>'
        f"</{verb}Response>"
    ).encode()


HOSTILE = {
    "billion-laughs": lambda verb, path: _billion_laughs(verb),
    "external-entity": _external_entity,
}


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(CANARY)
    return path


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_parse_refuses_entities_and_external_dtds(kind: str, secret_file: Path) -> None:
    content = HOSTILE[kind]("ReviseInventoryStatus", secret_file)
    with pytest.raises(PermanentError) as caught:
        parse_answer(content, channel="ebay-main", operation="ReviseInventoryStatus")
    message = str(caught.value)
    assert "declares XML entities" in message
    assert CANARY not in message
    assert "lollol" not in message


def test_an_external_dtd_is_never_fetched(tmp_path: Path) -> None:
    dtd = tmp_path / "leak.dtd"
    dtd.write_text(f'<!ENTITY leak "{CANARY}">')
    head = f'<?xml version="1.0"?><!DOCTYPE GetMyeBaySellingResponse SYSTEM "file://{dtd}">'
    uses = (
        f'{head}<GetMyeBaySellingResponse xmlns="{NS}"><Ack>&leak;</Ack></GetMyeBaySellingResponse>'
    )
    # Had the DTD been read, &leak; would be defined (and refused as an entity); unread, it is
    # undefined: not a readable answer.
    with pytest.raises(RetryableError, match="answer is not XML") as caught:
        parse_answer(uses.encode(), channel="ebay-main", operation="GetMyeBaySelling")
    assert CANARY not in str(caught.value)
    plain = f'{head}<GetMyeBaySellingResponse xmlns="{NS}"><Ack>Success</Ack></GetMyeBaySellingResponse>'
    answer = parse_answer(plain.encode(), channel="ebay-main", operation="GetMyeBaySelling")
    assert answer.ack == "Success"


def test_an_ordinary_answer_and_a_proxy_page_are_read_as_before() -> None:
    answer = parse_answer(
        trading_answer("GetMyeBaySelling"), channel="ebay-main", operation="GetMyeBaySelling"
    )
    assert (answer.verb, answer.ack, answer.errors) == ("GetMyeBaySelling", "Success", ())
    # A doctype without entity declarations (an HTML error page) is still "not XML": retried.
    page = b"<!DOCTYPE html><html><body><p>Bad gateway<br></p></body></html>"
    with pytest.raises(RetryableError, match="answer is not XML"):
        parse_answer(page, channel="ebay-main", operation="GetMyeBaySelling")


@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_a_hostile_revise_answer_applies_nothing(kind: str, secret_file: Path) -> None:
    trading = FakeTrading()
    trading.on("ReviseInventoryStatus", HOSTILE[kind]("ReviseInventoryStatus", secret_file))
    connector = connect(FakeEbay(), trading)
    results = await connector.push_stock(
        [StockTarget("trading:110550000001", 3), StockTarget("trading:110550000002", 4)]
    )
    assert [r.outcome for r in results] == [PushOutcome.REJECTED] * 2
    for result in results:
        assert result.error is not None
        assert "declares XML entities" in result.error
        assert CANARY not in result.error
    await connector.aclose()


async def test_a_hostile_listings_page_is_refused(secret_file: Path) -> None:
    trading = FakeTrading()
    trading.on("GetMyeBaySelling", _external_entity("GetMyeBaySelling", secret_file))
    ebay = FakeEbay()
    ebay.on("GET", "/sell/inventory/v1/inventory_item", {"inventoryItems": [], "total": 0})
    connector = connect(ebay, trading)
    with pytest.raises(PermanentError, match="declares XML entities") as caught:
        await connector.list_listings()
    assert CANARY not in str(caught.value)
    await connector.aclose()


async def test_ebaysdk_never_parses_an_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import ebaysdk.response

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("ebaysdk parsed a Trading answer")

    monkeypatch.setattr(ebaysdk.response.Response, "__init__", refuse)
    monkeypatch.setattr(ebaysdk.response.Response, "_parse_xml", refuse)
    connector = connect(FakeEbay(), FakeTrading())
    results = await connector.push_stock([StockTarget("trading:110550000001", 3)])
    assert [r.outcome for r in results] == [PushOutcome.APPLIED]
    await connector.aclose()
