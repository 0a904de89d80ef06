"""Amazon's own API models (../shared/specs/amazon, Swagger 2.0) and JSON schemas, read once, as the
sandbox uses them: to check a request's parameters and body, to check its own answers, and to serve
the models' `x-amzn-api-sandbox` static examples for the requests they describe.

A user's clone has no ../shared/specs: `load_specs()` then answers None (logged once) and the
sandbox serves requests with its own checks only. Nothing here is copied into the repository.

A static example is served only when the request carries every parameter value the example
names (arrays compared as sets) and the example names at least one: an example without any value
(`{"body": {}}`) would shadow every request and is only used by the tests. When several match, the
one naming the most values wins (a NextToken page over the first page of the same search).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, Draft7Validator, FormatChecker

log = logging.getLogger(__name__)

SPECS_ENV = "CHANNEL_SYNC_SPECS_DIR"
"""Environment variable naming the specs directory, instead of ../shared/specs beside the repo."""

AMAZON_DIR = Path("amazon/selling-partner-api-models")
MODEL_FILES = {
    "orders": "models/orders-api-model/orders_2026-01-01.json",
    "ordersV0": "models/orders-api-model/ordersV0.json",
    "listings": "models/listings-items-api-model/listingsItems_2021-08-01.json",
    "feeds": "models/feeds-api-model/feeds_2021-06-30.json",
    "reports": "models/reports-api-model/reports_2021-06-30.json",
}
SCHEMA_FILES = {
    "orderChange": "schemas/notifications/OrderChangeNotification.json",
    "listingsFeed": "schemas/feeds/listings-feed-schema-v2.json",
    "listingsFeedMessage": "schemas/feeds/listings-feed-message-schema-v2.json",
    "processingReport": "schemas/feeds/listings-feed-processing-report-schema-v2.json",
}
OPERATION_PATHS = {
    "searchOrders": ("orders", "/orders/2026-01-01/orders", "get"),
    "getOrder": ("orders", "/orders/2026-01-01/orders/{orderId}", "get"),
    "getOrders": ("ordersV0", "/orders/v0/orders", "get"),
    "getOrderItems": ("ordersV0", "/orders/v0/orders/{orderId}/orderItems", "get"),
    "confirmShipment": ("ordersV0", "/orders/v0/orders/{orderId}/shipmentConfirmation", "post"),
    "patchListingsItem": ("listings", "/listings/2021-08-01/items/{sellerId}/{sku}", "patch"),
    "getListingsItem": ("listings", "/listings/2021-08-01/items/{sellerId}/{sku}", "get"),
    "searchListingsItems": ("listings", "/listings/2021-08-01/items/{sellerId}", "get"),
    "createFeedDocument": ("feeds", "/feeds/2021-06-30/documents", "post"),
    "createFeed": ("feeds", "/feeds/2021-06-30/feeds", "post"),
    "getFeed": ("feeds", "/feeds/2021-06-30/feeds/{feedId}", "get"),
    "getFeedDocument": ("feeds", "/feeds/2021-06-30/documents/{feedDocumentId}", "get"),
    "createReport": ("reports", "/reports/2021-06-30/reports", "post"),
    "getReport": ("reports", "/reports/2021-06-30/reports/{reportId}", "get"),
    "getReportDocument": ("reports", "/reports/2021-06-30/documents/{reportDocumentId}", "get"),
}
"""Operation -> (model, path, method) in Amazon's models."""

FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return True


def default_specs_dir() -> Path:
    """$CHANNEL_SYNC_SPECS_DIR, else `../shared/specs` beside the repository root."""
    configured = os.environ.get(SPECS_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2].parent / "shared" / "specs"


def _problems(validator: Draft4Validator | Draft7Validator, instance: object) -> list[str]:
    """Each error as `where: what`, deepest first, at most five."""
    errors = sorted(validator.iter_errors(instance), key=lambda e: -len(e.absolute_path))
    shown = []
    for error in errors[:5]:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        shown.append(f"{where}: {error.message[:300]}")
    return shown


@dataclass(frozen=True)
class StaticExample:
    """One `x-amzn-api-sandbox` static example: the request's parameter values, the answer."""

    status: int
    parameters: Mapping[str, Any]
    """Parameter name -> value, only those the example gives a value for."""
    response: Any

    def matches(self, request: Mapping[str, Any]) -> bool:
        """Whether the request carries every value the example names (and it names one)."""
        if not self.parameters:
            return False
        return all(_same(request.get(name), value) for name, value in self.parameters.items())


def _same(given: Any, wanted: Any) -> bool:
    if isinstance(wanted, list) and isinstance(given, list):
        return sorted(map(json.dumps, given)) == sorted(map(json.dumps, wanted))
    return bool(given == wanted)


@dataclass
class OperationSpec:
    """One operation of a model: its parameters, body and answer schemas, static examples."""

    name: str
    parameters: list[dict[str, Any]]
    definitions: dict[str, Any]
    responses: dict[int, dict[str, Any] | None]
    examples: list[StaticExample] = field(default_factory=list)

    _validators: dict[str, Draft4Validator] = field(default_factory=dict)

    def _validator(self, schema: dict[str, Any]) -> Draft4Validator:
        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            validator = Draft4Validator(
                {**schema, "definitions": self.definitions}, format_checker=FORMATS
            )
            self._validators[key] = validator
        return validator

    @functools.cached_property
    def body_parameter(self) -> dict[str, Any] | None:
        """The `in: body` parameter, if the operation takes one."""
        return next((p for p in self.parameters if p["in"] == "body"), None)

    def body_problems(self, body: object) -> list[str]:
        """What is wrong with a request body, by the model."""
        param = self.body_parameter
        if param is None:
            return []
        return _problems(self._validator(param["schema"]), body)

    def response_problems(self, status: int, body: object) -> list[str]:
        """What is wrong with an answer, by the model (an undeclared status is a problem)."""
        if status not in self.responses:
            return [f"status {status} is not declared for {self.name}"]
        schema = self.responses[status]
        if schema is None:
            return [] if body in (None, b"", {}) else [f"{self.name} {status} has no body"]
        return _problems(self._validator(schema), body)


@dataclass
class AmazonSpecs:
    """The operations the sandbox serves, and the JSON schemas of notifications and feeds."""

    operations: dict[str, OperationSpec]
    schemas: dict[str, dict[str, Any]]
    _validators: dict[str, Draft7Validator] = field(default_factory=dict)
    verdicts: dict[str, list[str]] = field(default_factory=dict)
    """Memo of feed message checks by message shape (feed_processing.py)."""

    def schema_problems(self, name: str, instance: object) -> list[str]:
        """What is wrong with `instance` by one of the JSON schemas (SCHEMA_FILES keys)."""
        validator = self._validators.get(name)
        if validator is None:
            validator = Draft7Validator(self.schemas[name], format_checker=FORMATS)
            self._validators[name] = validator
        return _problems(validator, instance)


def _operation(name: str, model: dict[str, Any], path: str, method: str) -> OperationSpec:
    entry = model["paths"][path]
    op = entry[method]
    parameters = [*entry.get("parameters", []), *op.get("parameters", [])]
    responses: dict[int, dict[str, Any] | None] = {}
    examples: list[StaticExample] = []
    for code, answer in op["responses"].items():
        status = int(code)
        responses[status] = answer.get("schema")
        for example in answer.get("x-amzn-api-sandbox", {}).get("static", []):
            given = example.get("request", {}).get("parameters", {})
            values = {
                k: v["value"] for k, v in given.items() if isinstance(v, dict) and "value" in v
            }
            examples.append(StaticExample(status, values, example.get("response")))
    return OperationSpec(name, parameters, model["definitions"], responses, examples)


def read_specs(root: Path) -> AmazonSpecs:
    """The models and schemas under `root` (the specs directory), uncached."""
    base = root / AMAZON_DIR
    models = {key: json.loads((base / rel).read_text("utf-8")) for key, rel in MODEL_FILES.items()}
    operations = {
        name: _operation(name, models[model], path, method)
        for name, (model, path, method) in OPERATION_PATHS.items()
    }
    schemas = {
        key: json.loads((base / rel).read_text("utf-8")) for key, rel in SCHEMA_FILES.items()
    }
    return AmazonSpecs(operations, schemas)


@functools.cache
def load_specs(specs_dir: Path | None = None) -> AmazonSpecs | None:
    """Amazon's models, read once per process; None, logged once, when they are not there."""
    root = specs_dir or default_specs_dir()
    if not (root / AMAZON_DIR / MODEL_FILES["orders"]).is_file():
        log.warning(
            "Amazon API models not found under %s: the Amazon sandbox serves requests without "
            "checking them against the models or serving their static examples",
            root,
        )
        return None
    return read_specs(root)
