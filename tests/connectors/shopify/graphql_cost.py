"""Shopify's published rule for a query's requested cost, computed over a parsed document.

An object costs 1, a scalar or enum 0, a connection 2 + `first` x the cost of one node, a list
sized by an argument (`first`, or the length of a list argument such as `ids`) that many times its
item, an interface or union the dearest of its selections, and a mutation 10. Test-only: the
connector paces from the costs Shopify reports, never from this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    get_nullable_type,
    is_leaf_type,
    parse,
    value_from_ast_untyped,
)

MUTATION_COST = 10


def requested_cost(schema: GraphQLSchema, document: str, variables: Mapping[str, Any]) -> int:
    """The requested cost of the document's one operation, with `variables` at their worst."""
    parsed = parse(document)
    fragments = {
        d.name.value: d for d in parsed.definitions if isinstance(d, FragmentDefinitionNode)
    }
    (operation,) = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
    if operation.operation is OperationType.MUTATION:
        return MUTATION_COST
    root = schema.query_type
    assert root is not None
    return _selection_cost(schema, root, operation.selection_set, fragments, variables)


def _selection_cost(
    schema: GraphQLSchema,
    parent: GraphQLNamedType,
    selection_set: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> int:
    if selection_set is None:
        return 0
    total = 0
    by_type: dict[str, int] = {}
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if not isinstance(parent, GraphQLObjectType) and selection.name.value == "__typename":
                continue
            field = parent.fields[selection.name.value]  # type: ignore[union-attr]
            total += _field_cost(schema, field, selection, fragments, variables)
        else:
            if isinstance(selection, FragmentSpreadNode):
                fragment = fragments[selection.name.value]
                type_name, inner = fragment.type_condition.name.value, fragment.selection_set
            else:
                assert isinstance(selection, InlineFragmentNode)
                condition = selection.type_condition
                type_name = condition.name.value if condition else parent.name
                inner = selection.selection_set
            target = schema.get_type(type_name)
            assert target is not None
            cost = _selection_cost(schema, target, inner, fragments, variables)
            if target.name == parent.name:
                total += cost
            else:  # an interface's possible types: the dearest counts
                by_type[type_name] = by_type.get(type_name, 0) + cost
    return total + (max(by_type.values()) if by_type else 0)


def _argument(node: FieldNode, name: str, variables: Mapping[str, Any]) -> Any:
    for argument in node.arguments:
        if argument.name.value == name:
            return value_from_ast_untyped(argument.value, variables)
    return None


def _field_cost(
    schema: GraphQLSchema,
    field: GraphQLField,
    node: FieldNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> int:
    named = get_named_type(field.type)
    if is_leaf_type(named):
        return 0
    child = _selection_cost(schema, named, node.selection_set, fragments, variables)
    if named.name.endswith("Connection"):
        first = _argument(node, "first", variables) or _argument(node, "last", variables) or 0
        nodes = next(
            (
                s
                for s in node.selection_set.selections  # type: ignore[union-attr]
                if isinstance(s, FieldNode) and s.name.value in ("nodes", "edges")
            ),
            None,
        )
        assert isinstance(named, GraphQLObjectType)
        per_node = 0
        if nodes is not None:
            node_type = get_named_type(named.fields["nodes"].type)
            selection = _node_selection(nodes)
            per_node = 1 + _selection_cost(schema, node_type, selection, fragments, variables)
        return 2 + int(first) * per_node
    if isinstance(get_nullable_type(field.type), GraphQLList):
        size = _argument(node, "first", variables)
        if size is None:
            values = [value_from_ast_untyped(a.value, variables) for a in node.arguments]
            lists = [v for v in values if isinstance(v, list)]
            size = len(lists[0]) if lists else 1
        return int(size) * (1 + child)
    return 1 + child


def _node_selection(node: FieldNode) -> SelectionSetNode | None:
    if node.name.value == "nodes":
        return node.selection_set
    assert node.selection_set is not None  # edges { node { ... } }
    inner = next(
        s
        for s in node.selection_set.selections
        if isinstance(s, FieldNode) and s.name.value == "node"
    )
    return inner.selection_set
