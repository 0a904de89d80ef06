"""Connections and search: Shopify's `first/after/last/before/reverse` pages with opaque cursors,
and the `query:` search syntax (`updated_at:>='2024-01-01T00:00:00Z' sku:A OR sku:B`).

Search terms on a field the resource does not support are ignored, as Shopify does, and reported
in `extensions.search` warnings ("Invalid search field for this query.").
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sandbox.shopify.executor import FieldError

MAX_PAGE_SIZE = 250
"""Connections return at most this many nodes per page."""

T = TypeVar("T")
SortValue = str | int
Field = Callable[[Any], "str | int | datetime | None"]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<bool>OR|AND)(?=\s|$)
      | (?P<neg>-)?(?P<field>[A-Za-z_]+):(?P<op><=|>=|<|>|=)?
        (?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s()]+)
      | (?P<word>[^\s()]+)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Term:
    """`field:opvalue`, possibly negated; a bare word has field "default"."""

    field: str
    op: str
    value: str
    negated: bool = False


def parse_search(query: str | None) -> list[list[Term]]:
    """A search string as alternatives (OR) of conjunctions (AND, or juxtaposition)."""
    groups: list[list[Term]] = [[]]
    for match in _TOKEN.finditer(query or ""):
        if match.group("bool") == "OR":
            groups.append([])
        elif match.group("bool") == "AND":
            continue
        elif match.group("field"):
            value = match.group("value")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            groups[-1].append(
                Term(
                    match.group("field").lower(),
                    match.group("op") or "=",
                    value,
                    bool(match.group("neg")),
                )
            )
        elif match.group("word"):
            groups[-1].append(Term("default", "=", match.group("word")))
    return [group for group in groups if group]


def _parse_time(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _compare(actual: str | int | datetime | None, op: str, wanted: str) -> bool:
    if actual is None:
        return False
    target: str | int | datetime | None
    if isinstance(actual, datetime):
        target = _parse_time(wanted)
    elif isinstance(actual, int):
        target = int(wanted) if wanted.lstrip("-").isdigit() else None
    else:
        text, wanted_text = actual.lower(), wanted.lower()
        if op == "=":
            if wanted_text.endswith("*"):
                return text.startswith(wanted_text[:-1])
            return text == wanted_text
        actual, target = text, wanted_text
    if target is None:
        return False
    checks: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: a == b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    return checks[op](actual, target)


class Search:
    """A parsed search over one resource's supported fields, collecting warnings."""

    def __init__(self, query: str | None, fields: Mapping[str, Field]) -> None:
        self.query = query
        self.groups = parse_search(query)
        self.fields = fields
        self.warnings = sorted(
            {t.field for group in self.groups for t in group if t.field not in fields}
        )

    def matches(self, item: object) -> bool:
        """Whether `item` satisfies the search (an empty search matches everything)."""
        if not self.groups:
            return True
        return any(all(self._term(item, t) for t in group) for group in self.groups)

    def _term(self, item: object, term: Term) -> bool:
        accessor = self.fields.get(term.field)
        if accessor is None:
            return True  # Shopify ignores a field it does not support (and warns)
        values = accessor(item)
        many = values if isinstance(values, list) else [values]
        hit = any(_compare(value, term.op, term.value) for value in many)
        return hit != term.negated


def encode_cursor(value: SortValue, item_id: int) -> str:
    """An opaque cursor, base64 JSON as Shopify's are."""
    raw = json.dumps({"last_id": item_id, "last_value": value}, separators=(",", ":"))
    return base64.b64encode(raw.encode()).decode("ascii")


def decode_cursor(cursor: str) -> tuple[SortValue, int]:
    """(sort value, id) of a cursor this server handed out; FieldError otherwise."""
    try:
        raw = json.loads(base64.b64decode(cursor.encode("ascii"), validate=True))
        return raw["last_value"], int(raw["last_id"])
    except (binascii.Error, UnicodeError, ValueError, KeyError, TypeError) as err:
        raise FieldError("Invalid cursor for current pagination sort.", "BAD_REQUEST") from err


def connection(
    typename: str,
    items: Sequence[T],
    args: Mapping[str, Any],
    *,
    key: Callable[[T], tuple[SortValue, int]],
    node: Callable[[T], dict[str, Any]],
) -> dict[str, Any]:
    """A page of `items` (in ascending sort order) as a Relay connection object."""
    first, last = args.get("first"), args.get("last")
    if first is None and last is None:
        raise FieldError("you must provide one of first or last", "BAD_REQUEST")
    for name, size in (("first", first), ("last", last)):
        if size is not None and not 0 <= int(size) <= MAX_PAGE_SIZE:
            raise FieldError(
                f"The '{name}' argument must be between 0 and {MAX_PAGE_SIZE}.", "BAD_REQUEST"
            )
    # Cursors are found by bisection over the ascending `items`, so a page costs its own size,
    # not the length of the list (100,000 variants paged 250 at a time stay fast).
    reverse = bool(args.get("reverse"))
    low, high = 0, len(items)
    try:
        if args.get("after"):
            after = decode_cursor(str(args["after"]))
            if reverse:
                high = min(high, bisect.bisect_left(items, after, key=key))
            else:
                low = max(low, bisect.bisect_right(items, after, key=key))
        if args.get("before"):
            before = decode_cursor(str(args["before"]))
            if reverse:
                low = max(low, bisect.bisect_right(items, before, key=key))
            else:
                high = min(high, bisect.bisect_left(items, before, key=key))
    except TypeError as err:  # a cursor made for another sort key
        raise FieldError("Invalid cursor for current pagination sort.", "BAD_REQUEST") from err
    # Positions in the answer's order (descending when reversed) of the items in the window.
    last_index = len(items) - 1
    span = range(low, max(low, high))
    window = [last_index - i for i in reversed(span)] if reverse else list(span)
    if first is not None:
        window = window[: int(first)]
    if last is not None:
        window = window[max(0, len(window) - int(last)) :]

    def at(position: int) -> T:
        return items[last_index - position] if reverse else items[position]

    nodes = [node(at(i)) for i in window]
    cursors = [encode_cursor(*key(at(i))) for i in window]
    edge_type = typename.removesuffix("Connection") + "Edge"
    return {
        "__typename": typename,
        "nodes": nodes,
        "edges": [
            {"__typename": edge_type, "cursor": c, "node": n}
            for c, n in zip(cursors, nodes, strict=True)
        ],
        "pageInfo": {
            "__typename": "PageInfo",
            "hasNextPage": bool(window) and window[-1] < last_index,
            "hasPreviousPage": bool(window) and window[0] > 0,
            "startCursor": cursors[0] if cursors else None,
            "endCursor": cursors[-1] if cursors else None,
        },
    }
