"""Relay connections in the sandbox: every combination of first/last/after/before/reverse pages
like a plain slice of the sorted list would, and walking a large list costs a page, not a scan."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from sandbox.shopify.executor import FieldError
from sandbox.shopify.paging import connection, encode_cursor

ITEMS = [(value, item_id) for item_id, value in enumerate("aabbcdeffg", start=1)]


def _page(items: list[tuple[str, int]], args: dict[str, Any]) -> dict[str, Any]:
    return connection(
        "ThingConnection", items, args, key=lambda item: item, node=lambda item: {"id": item[1]}
    )


def _expected(args: dict[str, Any]) -> tuple[list[int], bool, bool]:
    """The slice the Relay rules give, computed the obvious way."""
    ordered = list(reversed(ITEMS)) if args.get("reverse") else list(ITEMS)
    positions = list(range(len(ordered)))
    if "after" in args:
        positions = [p for p in positions if p > ordered.index(args["after"])]
    if "before" in args:
        positions = [p for p in positions if p < ordered.index(args["before"])]
    if args.get("first") is not None:
        positions = positions[: args["first"]]
    if args.get("last") is not None:
        positions = positions[max(0, len(positions) - args["last"]) :]
    has_next = bool(positions) and positions[-1] < len(ordered) - 1
    has_previous = bool(positions) and positions[0] > 0
    return [ordered[p][1] for p in positions], has_next, has_previous


CASES = [
    {
        k: v
        for k, v in (
            ("first", first),
            ("last", last),
            ("reverse", reverse),
            ("after", after),
            ("before", before),
        )
        if v is not None
    }
    for first, last, reverse, after, before in itertools.product(
        (None, 0, 3, 20),
        (None, 2),
        (None, True),
        (None, ITEMS[2], ITEMS[7]),
        (None, ITEMS[5], ITEMS[0]),
    )
    if first is not None or last is not None
]


@pytest.mark.parametrize("args", CASES, ids=repr)
def test_a_page_is_the_slice_the_relay_rules_give(args: dict[str, Any]) -> None:
    wire = {
        **args,
        **{k: encode_cursor(*args[k]) for k in ("after", "before") if k in args},
    }
    page = _page(ITEMS, wire)
    ids, has_next, has_previous = _expected(args)
    assert [node["id"] for node in page["nodes"]] == ids
    assert page["pageInfo"]["hasNextPage"] is has_next
    assert page["pageInfo"]["hasPreviousPage"] is has_previous
    assert [edge["cursor"] for edge in page["edges"]] == [encode_cursor(*ITEMS[i - 1]) for i in ids]


def test_walking_forward_and_backward_visits_every_item_once() -> None:
    for reverse in (False, True):
        seen: list[int] = []
        after = None
        while True:
            page = _page(ITEMS, {"first": 3, "after": after, "reverse": reverse})
            seen.extend(node["id"] for node in page["nodes"])
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert seen == sorted(seen, reverse=reverse) == [*range(1, 11)][:: -1 if reverse else 1]


def test_a_cursor_of_another_sort_is_refused() -> None:
    with pytest.raises(FieldError):
        _page(ITEMS, {"first": 2, "after": encode_cursor(7, 3)})


def test_a_page_deep_in_a_long_list_looks_at_its_own_items_not_the_list() -> None:
    """Finding the cursor bisects: a page of 250 out of 100,000 items reads the sort key of a
    few hundred items, where a scan read all of them (a full listing read was 400 scans)."""
    items = [(i, i) for i in range(100_000)]
    looked: list[int] = []

    def key(item: tuple[int, int]) -> tuple[int, int]:
        looked.append(item[1])
        return item

    page = connection(
        "ThingConnection",
        items,
        {"first": 250, "after": encode_cursor(60_000, 60_000)},
        key=key,
        node=lambda item: {"id": item[1]},
    )
    assert [node["id"] for node in page["nodes"]] == list(range(60_001, 60_251))
    assert len(looked) < 300
