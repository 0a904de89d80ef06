"""ORDER_CHANGE notifications: the official example parses; anything else is refused by name."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest

from connectors.amazon import NotificationError, parse_order_change
from tests.connectors.amazon.conftest import load_spec


def official() -> dict[str, Any]:
    schema = load_spec("schemas", "notifications", "OrderChangeNotification.json")
    (example,) = schema["examples"]
    assert isinstance(example, dict)
    return example


def test_the_official_example_parses() -> None:
    schema = load_spec("schemas", "notifications", "OrderChangeNotification.json")
    example = official()
    jsonschema.Draft7Validator(schema).validate(example)  # the example is what the schema says
    notice = parse_order_change(json.dumps(example))
    assert notice.notification_id == "d0e9e693-c3ad-4373-979f-ed4ec98dd746"
    assert notice.order_id == "903-8868176-2219830"
    assert notice.seller_id == "A3TH9S8BH6GOGM"
    assert notice.change_type == "BuyerRequestedChange"
    assert notice.order_status == "Unshipped"
    assert notice.event_time == datetime(2022, 11, 29, 19, 42, 4, 284000, tzinfo=UTC)


def test_bytes_and_a_minimal_notification_parse() -> None:
    minimal = {
        "NotificationType": "ORDER_CHANGE",
        "NotificationMetadata": {"NotificationId": "n-1"},
        "Payload": {"OrderChangeNotification": {"AmazonOrderId": "114-1"}},
    }
    notice = parse_order_change(json.dumps(minimal).encode())
    assert (notice.notification_id, notice.order_id, notice.event_time) == ("n-1", "114-1", None)


def _without(path: tuple[str, ...]) -> dict[str, Any]:
    message = official()
    node: Any = message
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return message


def _other_type() -> dict[str, Any]:
    return {**official(), "NotificationType": "ANY_OFFER_CHANGED"}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (lambda: "not json {", "not JSON"),
        (lambda: "[1, 2]", "the notification"),
        (lambda: json.dumps(_other_type()), "ANY_OFFER_CHANGED"),
        (
            lambda: json.dumps(_without(("NotificationMetadata", "NotificationId"))),
            "NotificationMetadata.NotificationId",
        ),
        (
            lambda: json.dumps(_without(("Payload", "OrderChangeNotification", "AmazonOrderId"))),
            "AmazonOrderId",
        ),
        (lambda: json.dumps(_without(("Payload",))), "Payload"),
    ],
)
def test_unreadable_messages_are_refused_naming_the_part(
    body: Callable[[], str], named: str
) -> None:
    with pytest.raises(NotificationError) as raised:
        parse_order_change(body())
    assert named in str(raised.value)
    assert "48110" not in str(raised.value)  # the buyer's postal code is never quoted
