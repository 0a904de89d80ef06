"""Run one GraphQL request the way the Admin API does: parse, validate against the schema (when
there is one), coerce variables, price it, then project hand-written resolvers' answers through
the selection sets.

Resolvers answer *objects*: mappings with a `__typename` whose values are plain JSON values, other
objects, lists, or callables taking the field's arguments (`dict[str, Any]`) for what needs them
or is costly. The projector handles aliases, fragments, `@skip`/`@include` and field merging; a
field the schema has but no resolver serves is an error naming it, never a silent null.

The actual cost (cost.py has the rules) counts what was returned: each object 1, each
connection 2, a mutation 10.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Undefined,
    parse,
    validate,
    value_from_ast_untyped,
)
from graphql.error import GraphQLSyntaxError
from graphql.execution.values import get_variable_values
from graphql.language import DirectiveNode

Obj = Mapping[str, Any]
Resolver = Callable[[dict[str, Any]], Any]
RootResolver = Callable[[dict[str, Any], FieldNode], Any]
"""A root field's resolver: its arguments and its node (for directives such as @idempotent)."""

# graphql-core's validation messages, mapped to the codes graphql-ruby (Shopify) puts in
# `extensions.code`; anything else is reported as a generic validation failure.
_VALIDATION_CODES = (
    (re.compile(r"^Cannot query field"), "undefinedField"),
    (re.compile(r"^Unknown argument"), "argumentNotAccepted"),
    (re.compile(r"^Field '.*' argument '.*' of type '.*' is required"), "missingRequiredArguments"),
    (re.compile(r"^Unknown type"), "undefinedType"),
    (re.compile(r"^Variable '.*' is never used"), "variableNotUsed"),
    (re.compile(r"^Variable '.*' is not defined"), "undefinedVariable"),
    (re.compile(r"is not defined by type"), "inputFieldNotDefined"),
    (
        re.compile(r"^Expected value of type|^Enum '.*' cannot represent"),
        "argumentLiteralsIncompatible",
    ),
    (re.compile(r"must have a selection of subfields"), "selectionMismatch"),
    (re.compile(r"^Unknown directive"), "undefinedDirective"),
)


class GraphQLRequestError(Exception):
    """A request answered with top-level `errors` only (HTTP 200, no data)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"] if errors else "GraphQL error")
        self.errors = errors


class FieldError(Exception):
    """A resolver's refusal of its arguments, answered as a top-level error with the field's
    path (Shopify answers these with `data` null and the error)."""

    def __init__(self, message: str, code: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.extensions = extensions


def error_entry(
    message: str,
    *,
    code: str | None = None,
    nodes: Sequence[Any] = (),
    path: Sequence[str | int] | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    """One entry of a response's `errors`, in Shopify's shape."""
    entry: dict[str, Any] = {"message": message}
    locations = [
        {"line": loc.line, "column": loc.column}
        for node in nodes
        if node.loc is not None
        for loc in [node.loc.source.get_location(node.loc.start)]
    ]
    if locations:
        entry["locations"] = locations
    if path is not None:
        entry["path"] = list(path)
    if code is not None or extensions:
        entry["extensions"] = {**({"code": code} if code else {}), **extensions}
    return entry


def _from_graphql_error(error: GraphQLError, default_code: str) -> dict[str, Any]:
    code = next((c for pattern, c in _VALIDATION_CODES if pattern.search(error.message)), None)
    entry: dict[str, Any] = {"message": error.message}
    if error.locations:
        entry["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    entry["extensions"] = {"code": code or default_code}
    return entry


@dataclass(frozen=True)
class Prepared:
    """A parsed, validated operation with its coerced variables, ready to price and run."""

    kind: str  # "query" or "mutation"
    operation: OperationDefinitionNode
    fragments: Mapping[str, FragmentDefinitionNode]
    variables: dict[str, Any]
    schema: GraphQLSchema | None

    @property
    def root_fields(self) -> list[list[FieldNode]]:
        """The top-level fields, grouped by response key."""
        return list(
            collect_fields(self.operation.selection_set, None, self, lambda *_: True).values()
        )

    @property
    def operation_label(self) -> str:
        """What `/_sandbox/calls` and the fault knobs call this request: its first root field."""
        fields = self.root_fields
        return fields[0][0].name.value if fields else "empty"


@functools.lru_cache(maxsize=256)
def _checked(
    schema: GraphQLSchema | None, query: str
) -> tuple[DocumentNode | None, tuple[dict[str, Any], ...]]:
    """The parsed document and Shopify's errors for it: a client sends the same few documents
    over and over, and validating one against the Admin schema takes tens of milliseconds."""
    try:
        document = parse(query)
    except GraphQLSyntaxError as err:
        return None, (_from_graphql_error(err, "syntaxError"),)
    if schema is not None:
        problems = validate(schema, document)
        if problems:
            return None, tuple(_from_graphql_error(p, "validationFailed") for p in problems)
    return document, ()


def prepare(
    schema: GraphQLSchema | None,
    query: str,
    variables: Mapping[str, Any] | None,
    operation_name: str | None,
) -> Prepared:
    """Parse, validate and pick the operation; GraphQLRequestError with Shopify's error shape
    for anything Shopify would refuse before running it."""
    document, problems = _checked(schema, query)
    if document is None:
        raise GraphQLRequestError([dict(problem) for problem in problems])
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    if operation_name:
        chosen = [op for op in operations if op.name and op.name.value == operation_name]
        if not chosen:
            raise GraphQLRequestError([error_entry(f"No operation named '{operation_name}'")])
    elif len(operations) > 1:
        raise GraphQLRequestError(
            [error_entry("An operation name is required when sending multiple operations.")]
        )
    else:
        chosen = operations
    if not chosen:
        raise GraphQLRequestError([error_entry("No operations in query document")])
    operation = chosen[0]
    if operation.operation not in (OperationType.QUERY, OperationType.MUTATION):
        raise GraphQLRequestError([error_entry("Subscriptions are not supported")])
    return Prepared(
        kind=operation.operation.value,
        operation=operation,
        fragments=fragments,
        variables=_coerce_variables(schema, operation, dict(variables or {})),
        schema=schema,
    )


def _coerce_variables(
    schema: GraphQLSchema | None, operation: OperationDefinitionNode, given: dict[str, Any]
) -> dict[str, Any]:
    definitions = operation.variable_definitions or ()
    if schema is None:
        values = dict(given)
        for definition in definitions:
            name = definition.variable.name.value
            if name not in values and definition.default_value is not None:
                values[name] = value_from_ast_untyped(definition.default_value)
        return values
    coerced = get_variable_values(schema, definitions, given)
    if isinstance(coerced, list):
        raise GraphQLRequestError([_from_graphql_error(e, "variableMismatch") for e in coerced])
    return coerced


def is_included(directives: Sequence[DirectiveNode] | None, variables: dict[str, Any]) -> bool:
    """Whether @skip/@include let a selection through."""
    for directive in directives or ():
        name = directive.name.value
        if name not in ("skip", "include"):
            continue
        condition = next(
            (
                value_from_ast_untyped(arg.value, variables)
                for arg in directive.arguments
                if arg.name.value == "if"
            ),
            False,
        )
        if (name == "skip" and condition is True) or (name == "include" and condition is not True):
            return False
    return True


TypeMatcher = Callable[[str, str | None], bool]
"""(type condition, runtime type name or None when unknown) -> whether the fragment applies."""


def collect_fields(
    selection_set: SelectionSetNode,
    typename: str | None,
    prepared: Prepared,
    matches: TypeMatcher,
) -> dict[str, list[FieldNode]]:
    """Fields of a selection set by response key, fragments expanded, skip/include applied."""
    fields: dict[str, list[FieldNode]] = {}

    def walk(selections: SelectionSetNode, seen: frozenset[str]) -> None:
        for selection in selections.selections:
            if not is_included(selection.directives, prepared.variables):
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                fields.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is None or matches(condition.name.value, typename):
                    walk(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = prepared.fragments.get(name)
                if fragment is None or name in seen:
                    continue
                if matches(fragment.type_condition.name.value, typename):
                    walk(fragment.selection_set, seen | {name})

    walk(selection_set, frozenset())
    return fields


def arguments(node: FieldNode, variables: dict[str, Any]) -> dict[str, Any]:
    """A field's arguments as plain values (variables substituted, absent ones left out)."""
    values = {}
    for arg in node.arguments:
        value = value_from_ast_untyped(arg.value, variables)
        if value is not Undefined:
            values[arg.name.value] = value
    return values


def directive_argument(node: FieldNode, directive: str, argument: str, prepared: Prepared) -> Any:
    """The value of `@directive(argument:)` on a field; None if absent."""
    for found in node.directives or ():
        if found.name.value == directive:
            for arg in found.arguments:
                if arg.name.value == argument:
                    return value_from_ast_untyped(arg.value, prepared.variables)
    return None


MUTATION_COST = 10
"""What Shopify charges for each mutation field, whatever it selects."""


def object_cost(typename: str) -> int:
    """What one returned object adds to the actual cost."""
    if typename.endswith("Connection"):
        return 2
    if typename.endswith("Edge") or typename == "PageInfo":
        return 0
    return 1


# ---- execution -------------------------------------------------------------------------------


class Executor:
    """Projects resolvers' objects through one prepared operation, counting the actual cost."""

    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared
        self.actual_cost = 0
        self._count = prepared.kind == "query"
        schema = prepared.schema
        self._matches: TypeMatcher = _lenient_match
        if schema is not None:
            self._matches = _schema_matcher(schema)

    def run(self, root: Mapping[str, RootResolver]) -> dict[str, Any]:
        """`data` for the operation; root fields resolve through `root` (name -> resolver).
        A FieldError becomes a GraphQLRequestError with the field's path."""
        data: dict[str, Any] = {}
        for group in self.prepared.root_fields:
            node = group[0]
            key = node.alias.value if node.alias else node.name.value
            name = node.name.value
            if name == "__typename":
                data[key] = "Mutation" if self.prepared.kind == "mutation" else "QueryRoot"
                continue
            resolver = root.get(name)
            if resolver is None:
                raise GraphQLRequestError([_unimplemented(self.prepared.kind, name, group, [key])])
            try:
                value = resolver(arguments(node, self.prepared.variables), node)
                data[key] = self._complete(value, group, [key])
            except FieldError as err:
                raise _failure(err, group, [key]) from err
        if not self._count:
            self.actual_cost = MUTATION_COST * len(data)
        return data

    def _complete(self, value: Any, nodes: Sequence[FieldNode], path: list[str | int]) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            return [self._complete(item, nodes, [*path, i]) for i, item in enumerate(value)]
        if isinstance(value, Mapping) and "__typename" in value:
            return self._project(value, _sub_selections(nodes), path)
        return value

    def _project(
        self, obj: Obj, sets: Sequence[SelectionSetNode], path: list[str | int]
    ) -> dict[str, Any]:
        typename: str = obj["__typename"]
        if self._count:
            self.actual_cost += object_cost(typename)
        fields: dict[str, list[FieldNode]] = {}
        for selection_set in sets:
            for key, nodes in collect_fields(
                selection_set, typename, self.prepared, self._matches
            ).items():
                fields.setdefault(key, []).extend(nodes)
        out: dict[str, Any] = {}
        for key, group in fields.items():
            name = group[0].name.value
            if name == "__typename":
                out[key] = typename
                continue
            if name not in obj:
                raise GraphQLRequestError([_unimplemented(typename, name, group, [*path, key])])
            value = obj[name]
            if callable(value):
                try:
                    value = value(arguments(group[0], self.prepared.variables))
                except FieldError as err:
                    raise _failure(err, group, [*path, key]) from err
            out[key] = self._complete(value, group, [*path, key])
        return out


def _sub_selections(nodes: Sequence[FieldNode]) -> list[SelectionSetNode]:
    return [node.selection_set for node in nodes if node.selection_set is not None]


def _failure(
    err: FieldError, nodes: Sequence[FieldNode], path: list[str | int]
) -> GraphQLRequestError:
    entry = error_entry(err.message, code=err.code, nodes=nodes, path=path, **err.extensions)
    return GraphQLRequestError([entry])


def _unimplemented(
    typename: str, field: str, nodes: Sequence[FieldNode], path: list[str | int]
) -> dict[str, Any]:
    return error_entry(
        f"Field '{field}' on type '{typename}' is valid but not served by the Shopify sandbox",
        code="SANDBOX_NOT_IMPLEMENTED",
        nodes=nodes,
        path=path,
    )


_KNOWN_INTERFACES = frozenset(
    {"Node", "LegacyInteroperability", "DisplayableError", "HasMetafields", "HasEvents"}
)


def _lenient_match(condition: str, typename: str | None) -> bool:
    # Without a schema the sandbox knows only the runtime type name: a fragment on it or on a
    # common interface applies, any other type condition does not.
    return typename is None or condition == typename or condition in _KNOWN_INTERFACES


def _schema_matcher(schema: GraphQLSchema) -> TypeMatcher:
    def matches(condition: str, typename: str | None) -> bool:
        if typename is None or condition == typename:
            return True
        abstract = schema.get_type(condition)
        concrete = schema.get_type(typename)
        if abstract is None or concrete is None:
            return False
        return bool(schema.is_sub_type(abstract, concrete))  # type: ignore[arg-type]

    return matches
