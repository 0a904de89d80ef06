"""Every GraphQL document the connector can send is valid against the Admin schema (2025-01 plus
the 2026 additions, as the sandbox loads it) and within Shopify's single-query cost limit.

The documents are collected from connectors/shopify/const.py, where the connector takes them
from; this test keeps no copy of its own.
"""

from __future__ import annotations

from typing import Any

import pytest
from graphql import GraphQLSchema, OperationDefinitionNode, OperationType, parse, validate

from connectors.shopify import const
from sandbox.shopify.schema import SCHEMA_FILE, load_admin_schema
from tests.connectors.shopify.graphql_cost import requested_cost
from tests.support.specs import SPECS_DIR, specs_dir

OPERATIONS = {
    name: value for name, value in vars(const).items() if isinstance(value, const.Operation)
}

# Variables at their worst: the largest page and batch sizes the connector ever sends.
WORST_VARIABLES: dict[str, Any] = {
    "id": "gid://shopify/Order/1",
    "after": "cursor",
    "query": "updated_at:>='2026-01-01T00:00:00Z'",
    "locationId": "gid://shopify/Location/1",
    "ids": ["gid://shopify/InventoryItem/1"] * const.READ_STOCK_BATCH,
}
FIRST = {
    const.ORDER_IDS.name: const.ORDERS_PAGE,
    const.VARIANTS.name: const.VARIANTS_PAGE,
}


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    specs_dir(*SCHEMA_FILE.parts)
    loaded = load_admin_schema(SPECS_DIR)
    assert loaded is not None
    return loaded


def test_the_connector_has_documents_to_check() -> None:
    names = {op.name for op in OPERATIONS.values()}
    assert len(names) == len(OPERATIONS) >= 14  # every operation named, no name twice
    assert {"ChannelSyncSetStock", "ChannelSyncFulfillmentCreate", "ChannelSyncOrderCancel"} <= (
        names
    )


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_document_is_valid(schema: GraphQLSchema, name: str) -> None:
    operation = OPERATIONS[name]
    document = parse(operation.document)
    assert validate(schema, document) == []
    (definition,) = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    assert definition.name is not None and definition.name.value == operation.name
    assert (definition.operation is OperationType.MUTATION) is operation.is_mutation


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_document_cost_is_within_the_limit_and_our_estimate(
    schema: GraphQLSchema, name: str
) -> None:
    operation = OPERATIONS[name]
    variables = {**WORST_VARIABLES, "first": FIRST.get(operation.name, 250)}
    cost = requested_cost(schema, operation.document, variables)
    assert cost <= const.MAX_QUERY_COST
    assert cost <= operation.cost  # pacing never takes fewer points than Shopify will ask


def test_inventory_mutation_carries_the_2026_requirements(schema: GraphQLSchema) -> None:
    document = const.SET_STOCK.document
    assert "@idempotent(key: $key)" in document
    quantity_input = schema.get_type("InventoryQuantityInput")
    assert "changeFromQuantity" in quantity_input.fields  # type: ignore[union-attr]
    assert "compareQuantity" not in quantity_input.fields  # type: ignore[union-attr]


def test_an_invalid_document_is_caught(schema: GraphQLSchema) -> None:
    """The check above can fail: a field Shopify does not have is reported."""
    broken = const.SHOP.document.replace("currencyCode", "currencyKode")
    assert validate(schema, parse(broken))
