"""Logging set-up: JSON lines off a terminal, readable lines on one, secrets always redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterable
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

MASK = "**********"

# Header-shaped credentials that may reach a log through a library's message or an exception:
# the value after the name is masked whatever it is, known secret or not.
_HEADER_PATTERN = re.compile(
    r"(?i)\b(authorization|proxy-authorization|x-shopify-access-token|x-amz-access-token"
    r"|x-ebay-api-iaf-token|x-shopify-hmac-sha256|x-ebay-signature)"
    r"(['\"]?\s*[:=]\s*['\"]?)(?:(?:bearer|basic)\s+)?[^\s'\",}]+"
)
_BEARER_PATTERN = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")
_QUERY_SECRET_PATTERN = re.compile(
    r"(?i)\b(access_token|refresh_token|client_secret|code|token)=[^&\s'\"]+"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask every known secret value and every header-shaped credential in `text`."""
    # Longest first, so a secret that contains another is masked whole.
    for value in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _HEADER_PATTERN.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _BEARER_PATTERN.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return _QUERY_SECRET_PATTERN.sub(lambda m: f"{m.group(1)}={MASK}", text)


class RedactingFilter(logging.Filter):
    """Renders each record once and masks secrets in its message and traceback before any handler."""

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        known = tuple(self._secrets())
        record.msg = redact(record.getMessage(), known)
        record.args = None
        if record.exc_info:
            # Format the traceback now (exception messages can carry URLs with tokens), then drop
            # exc_info so no handler formats the raw one again.
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info), known)
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info, known)
        return True


def configure_logging(
    level: str,
    fmt: Literal["auto", "json", "text"],
    secrets: Callable[[], Iterable[str]],
) -> None:
    """Send every logger to stderr through the redacting filter, as JSON or as text."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(secrets))
    if use_json:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries that log request lines or headers at INFO/DEBUG stay quiet unless asked.
    # Start-up chatter (alembic, uvicorn, apscheduler) repeats what our own lines already say.
    for noisy in (
        "httpx",
        "httpcore",
        "uvicorn.access",
        "uvicorn.error",
        "alembic.runtime.migration",
        "apscheduler.scheduler",
        "apscheduler.executors.default",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
