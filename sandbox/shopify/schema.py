"""The Admin GraphQL schema the sandbox validates against: the official 2025-01 introspection in
../shared/specs, brought up to the 2026-04 API the project pins (CHANNELS.md, "Shopify").

The 2025-01 file predates these changes, applied here once, on load:
- `InventoryQuantityInput.changeFromQuantity` (compare-and-swap, mandatory on every entry since
  2026-04, explicit null opts out) and `InventoryChangeInput.changeFromQuantity`; the older
  `compareQuantity` and `ignoreCompareQuantity` are gone in 2026-04, so they are removed;
- the `@idempotent(key:)` directive (mandatory at run time on inventory mutations since 2026-04;
  the schema does not mark it required) and the error codes that come with it;
- `WebhookSubscriptionInput.uri` and `WebhookSubscription.uri` (replaced `callbackUrl` in 2025-10);
- `orderCancel(refundMethod:)`, which deprecated `refund` in 2025-07 (CHANNELS.md marks the
  cancel inputs unsure: both are accepted, so `refund` becomes optional).

A user's clone has no ../shared/specs: `load_admin_schema()` answers None and logs it once, and
the sandbox then serves requests without validating them.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import os
from pathlib import Path
from typing import Any, cast

from graphql import (
    GraphQLSchema,
    IntrospectionQuery,
    build_client_schema,
    extend_schema,
    parse,
)

log = logging.getLogger(__name__)

SPECS_ENV = "CHANNEL_SYNC_SPECS_DIR"
"""Environment variable naming the specs directory, instead of ../shared/specs beside the repo."""

SCHEMA_FILE = Path("shopify/dev-mcp/data/admin_schema_2025-01.json.gz")
"""The introspection result, relative to the specs directory."""

EXTENSION_SDL = """
directive @idempotent(key: String!) on FIELD

extend input InventoryQuantityInput {
  "The quantity Shopify is believed to hold; null opts out of the check (mandatory since 2026-04)."
  changeFromQuantity: Int
}

extend input InventoryChangeInput {
  "The quantity Shopify is believed to hold before the change; null opts out of the check."
  changeFromQuantity: Int
}

extend enum InventorySetQuantitiesUserErrorCode {
  CHANGE_FROM_QUANTITY_STALE
  IDEMPOTENCY_CONCURRENT_REQUEST
  IDEMPOTENCY_KEY_PARAMETER_MISMATCH
}

extend enum InventoryAdjustQuantitiesUserErrorCode {
  CHANGE_FROM_QUANTITY_STALE
  IDEMPOTENCY_CONCURRENT_REQUEST
  IDEMPOTENCY_KEY_PARAMETER_MISMATCH
}

extend input WebhookSubscriptionInput {
  "Where deliveries go: an https URL, a Pub/Sub or an EventBridge address."
  uri: String
}

extend type WebhookSubscription {
  "Where deliveries go."
  uri: String!
}
"""

_REMOVED_INPUT_FIELDS = {
    "InventoryQuantityInput": {"compareQuantity"},
    "InventorySetQuantitiesInput": {"ignoreCompareQuantity"},
}

_REFUND_METHOD_INPUT: dict[str, Any] = {
    "kind": "INPUT_OBJECT",
    "name": "OrderCancelRefundMethodInput",
    "description": "How a cancelled order is refunded (2025-07). The sandbox leaves out "
    "`storeCreditRefund`.",
    "fields": None,
    "inputFields": [
        {
            "name": "originalPaymentMethodsRefund",
            "description": "Whether to refund to the original payment method.",
            "type": {"kind": "SCALAR", "name": "Boolean", "ofType": None},
            "defaultValue": None,
            "isDeprecated": False,
            "deprecationReason": None,
        }
    ],
    "interfaces": None,
    "enumValues": None,
    "possibleTypes": None,
}


def default_specs_dir() -> Path:
    """$CHANNEL_SYNC_SPECS_DIR, else `../shared/specs` beside the repository root."""
    configured = os.environ.get(SPECS_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2].parent / "shared" / "specs"


def _patch_introspection(data: dict[str, Any]) -> None:
    types: list[dict[str, Any]] = data["__schema"]["types"]
    by_name = {t["name"]: t for t in types}
    for type_name, removed in _REMOVED_INPUT_FIELDS.items():
        entry = by_name[type_name]
        entry["inputFields"] = [f for f in entry["inputFields"] if f["name"] not in removed]
    types.append(_REFUND_METHOD_INPUT)
    mutation = by_name[data["__schema"]["mutationType"]["name"]]
    cancel = next(f for f in mutation["fields"] if f["name"] == "orderCancel")
    for arg in cancel["args"]:
        if arg["name"] == "refund" and arg["type"]["kind"] == "NON_NULL":
            arg["type"] = arg["type"]["ofType"]
    cancel["args"].append(
        {
            "name": "refundMethod",
            "description": "How to refund the order (replaces `refund`).",
            "type": {
                "kind": "INPUT_OBJECT",
                "name": "OrderCancelRefundMethodInput",
                "ofType": None,
            },
            "defaultValue": None,
            "isDeprecated": False,
            "deprecationReason": None,
        }
    )


def build_admin_schema(schema_file: Path) -> GraphQLSchema:
    """The schema from an introspection file, with the 2026 changes applied (uncached)."""
    with gzip.open(schema_file, "rt", encoding="utf-8") as handle:
        raw = json.load(handle)
    data: dict[str, Any] = raw.get("data", raw)
    _patch_introspection(data)
    return extend_schema(build_client_schema(cast(IntrospectionQuery, data)), parse(EXTENSION_SDL))


@functools.cache
def load_admin_schema(specs_dir: Path | None = None) -> GraphQLSchema | None:
    """The Admin schema (2025-01 plus the 2026 changes), built once per process; None, logged
    once, when the specs are not there."""
    schema_file = (specs_dir or default_specs_dir()) / SCHEMA_FILE
    if not schema_file.is_file():
        log.warning(
            "Shopify Admin schema not found at %s: the Shopify sandbox serves requests "
            "without validating them against the schema",
            schema_file,
        )
        return None
    return build_admin_schema(schema_file)
