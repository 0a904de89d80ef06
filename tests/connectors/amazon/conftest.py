"""Fixtures for the Amazon connector tests: asyncio, an empty token cache, Amazon's models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.amazon.sdk import (
    access_token_client,  # importing sp_api.asyncio.auth first is circular
)
from tests.support.specs import specs_dir

AMAZON_MODELS = ("amazon", "selling-partner-api-models")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def empty_token_cache() -> Iterator[None]:
    """The package's token cache is process-wide: each test starts without cached tokens."""
    access_token_client.cache.clear()
    yield
    access_token_client.cache.clear()


def amazon_spec(*parts: str) -> Path:
    """A file of Amazon's published models (skips where ../shared/specs is absent)."""
    return specs_dir(*AMAZON_MODELS, *parts)


def load_spec(*parts: str) -> Any:
    return json.loads(amazon_spec(*parts).read_text(encoding="utf-8"))


def orders_model() -> Any:
    return load_spec("models", "orders-api-model", "orders_2026-01-01.json")


def orders_v0_model() -> Any:
    return load_spec("models", "orders-api-model", "ordersV0.json")


def sandbox_examples(model: Any, operation_id: str, status: str) -> list[dict[str, Any]]:
    """The `x-amzn-api-sandbox` static examples of one operation's answer `status`."""
    for operations in model["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                answer = operation["responses"].get(status, {})
                return list(answer.get("x-amzn-api-sandbox", {}).get("static", []))
    raise AssertionError(f"no operation {operation_id}")
