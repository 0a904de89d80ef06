"""Query cost, by Shopify's published rules (GraphQL Admin API rate limits, "Cost calculation"):
a scalar or enum 0, an object 1, a connection 2 plus `first` (or `last`) times the cost of one
node, a list sized by an argument (`first`, or the length of a list argument such as `ids`) that
many times its item, an interface or union the dearest of its type-conditioned selections, and a
mutation 10, whatever it selects.

The requested cost is computed from the document alone (the sandbox does not need the schema for
it: a field with `nodes` or `edges` below it is a connection); the actual cost is counted while
the answer is built, from what was returned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode

from sandbox.shopify.executor import MUTATION_COST, Prepared, arguments, is_included

Fields = dict[str, list[FieldNode]]


def _sub_selections(nodes: Sequence[FieldNode]) -> list[SelectionSetNode]:
    return [node.selection_set for node in nodes if node.selection_set is not None]


def _split(
    sets: Sequence[SelectionSetNode], prepared: Prepared
) -> tuple[Fields, dict[str, Fields]]:
    """Fields selected on the parent itself, and those under each fragment's type condition."""
    plain: Fields = {}
    typed: dict[str, Fields] = {}

    def walk(selections: SelectionSetNode, into: Fields, seen: frozenset[str]) -> None:
        for selection in selections.selections:
            if not is_included(selection.directives, prepared.variables):
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                into.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = typed.setdefault(condition.name.value, {}) if condition else into
                walk(selection.selection_set, target, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = prepared.fragments.get(name)
                if fragment is not None and name not in seen:
                    target = typed.setdefault(fragment.type_condition.name.value, {})
                    walk(fragment.selection_set, target, seen | {name})

    for selection_set in sets:
        walk(selection_set, plain, frozenset())
    return plain, typed


def _selection_cost(sets: Sequence[SelectionSetNode], prepared: Prepared) -> int:
    plain, typed = _split(sets, prepared)
    own = sum(_field_cost(group, prepared) for group in plain.values())
    by_type = [sum(_field_cost(g, prepared) for g in fields.values()) for fields in typed.values()]
    return own + max(by_type, default=0)


def _all_fields(sets: Sequence[SelectionSetNode], prepared: Prepared) -> Fields:
    plain, typed = _split(sets, prepared)
    merged: Fields = {key: list(group) for key, group in plain.items()}
    for fields in typed.values():
        for key, group in fields.items():
            merged.setdefault(key, []).extend(group)
    return merged


def _list_size(args: Mapping[str, Any]) -> int | None:
    if args.get("first") is not None:
        return int(args["first"])
    if args.get("last") is not None:
        return int(args["last"])
    lists = [value for value in args.values() if isinstance(value, list)]
    return len(lists[0]) if lists else None


def _field_cost(nodes: Sequence[FieldNode], prepared: Prepared) -> int:
    sets = _sub_selections(nodes)
    if not sets:
        return 0
    args = arguments(nodes[0], prepared.variables)
    children = _all_fields(sets, prepared)
    names = {group[0].name.value for group in children.values()}
    if names & {"nodes", "edges"}:
        per_node = 0
        for group in children.values():
            name = group[0].name.value
            if name == "nodes":
                per_node = max(per_node, 1 + _selection_cost(_sub_selections(group), prepared))
            elif name == "edges":
                for edge_group in _all_fields(_sub_selections(group), prepared).values():
                    if edge_group[0].name.value == "node":
                        inner = _sub_selections(edge_group)
                        per_node = max(per_node, 1 + _selection_cost(inner, prepared))
        return 2 + (_list_size(args) or 0) * per_node
    size = _list_size(args)
    return (1 if size is None else size) * (1 + _selection_cost(sets, prepared))


def requested_cost(prepared: Prepared) -> int:
    """The cost Shopify charges before running the operation."""
    roots = prepared.root_fields
    if prepared.kind == "mutation":
        return MUTATION_COST * len(roots)
    return sum(_field_cost(group, prepared) for group in roots)
