"""Log redaction: secrets and credential-shaped headers never reach a handler."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from sync.logs import MASK, RedactingFilter, configure_logging, redact

SECRET = "s3cr3t-value-xyz"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(lambda: {SECRET}))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield stream
    logger.removeHandler(handler)


def test_known_secret_is_masked_in_message_args_and_traceback(captured: io.StringIO) -> None:
    log = logging.getLogger("test.redaction")
    log.info("token is %s", SECRET)
    try:
        raise RuntimeError(f"request failed with key={SECRET}")
    except RuntimeError:
        log.exception("call failed")
    text = captured.getvalue()
    assert SECRET not in text
    assert text.count(MASK) >= 2
    assert "RuntimeError" in text  # the traceback is kept, only the secret goes


@pytest.mark.parametrize(
    "line",
    [
        "headers: {'Authorization': 'Bearer abcdef123456'}",
        "Authorization: Basic dXNlcjpwYXNzd29yZA==",
        "X-Shopify-Access-Token: shpat_0123456789abcdef",
        '"x-amz-access-token": "Atza|IwEBIExample"',
        "GET https://api.example.com/token?refresh_token=Atzr|abc&x=1",
    ],
)
def test_credential_shaped_text_is_masked_even_when_unknown(line: str) -> None:
    masked = redact(line)
    assert MASK in masked
    for leaked in ("abcdef123456", "dXNlcjpwYXNzd29yZA", "shpat_0123", "Atza|IwE", "Atzr|abc"):
        assert leaked not in masked


def test_json_format_gives_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json", lambda: {SECRET})
    try:
        logging.getLogger("test.json").info("hello %s", SECRET)
        logging.getLogger("test.json").debug("not shown")
    finally:
        logging.getLogger().handlers.clear()
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["message"] == f"hello {MASK}"
    assert record["level"] == "INFO"
    assert record["logger"] == "test.json"
