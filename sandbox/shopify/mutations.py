"""The mutation root: stock sets with compare-and-swap, fulfilments, cancellations and webhook
subscriptions, each checked the way the Admin API checks it and answered with its `userErrors`.

Idempotency (`@idempotent(key:)`): a key's first answer is kept and replayed for a retry with the
same arguments; the same key with other arguments answers IDEMPOTENCY_KEY_PARAMETER_MISMATCH.
Since 2026-04 inventory mutations must carry a key; Shopify documents that omitting it "results in
an error at runtime" without giving its shape, so the sandbox answers a top-level BAD_REQUEST
error naming the directive. Other mutations honour a key when one is given.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from graphql import FieldNode

from sandbox.shopify.executor import FieldError, Prepared, RootResolver, directive_argument
from sandbox.shopify.model import (
    FulfillmentOrder,
    FulfillmentOrderLine,
    Subscription,
    gid,
)
from sandbox.shopify.stock_set import number_or_none, set_quantities, user_error
from sandbox.shopify.store import StoreError
from sandbox.shopify.views import View

KEY_REQUIRED = frozenset({"inventorySetQuantities", "inventoryAdjustQuantities"})
"""Mutations that fail without an `@idempotent` key since 2026-04."""

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass
class IdempotencyLedger:
    """First answers by (mutation, key), with the arguments they answered; the oldest are
    forgotten past `limit` (Shopify keeps keys for a retention window, not for ever)."""

    limit: int = 100_000
    answers: OrderedDict[tuple[str, str], tuple[str, Any]] = field(default_factory=OrderedDict)

    def keep(self, key: tuple[str, str], fingerprint: str, answer: Any) -> None:
        """Remember a first answer."""
        self.answers[key] = (fingerprint, answer)
        while len(self.answers) > self.limit:
            self.answers.popitem(last=False)


@dataclass
class Mutations:
    """Mutation resolvers over one request's view."""

    view: View
    prepared: Prepared
    ledger: IdempotencyLedger

    def root(self) -> dict[str, RootResolver]:
        """Top-level mutation fields -> resolvers, wrapped with idempotency."""
        table: dict[str, Callable[[dict[str, Any]], Any]] = {
            "inventorySetQuantities": self.set_quantities,
            "fulfillmentCreate": self.fulfillment_create,
            "orderCancel": self.order_cancel,
            "webhookSubscriptionCreate": self.subscription_create,
            "webhookSubscriptionDelete": self.subscription_delete,
        }
        return {name: self._idempotent(name, resolve) for name, resolve in table.items()}

    def _idempotent(self, name: str, resolve: Callable[[dict[str, Any]], Any]) -> RootResolver:
        def run(args: dict[str, Any], node: FieldNode) -> Any:
            key = directive_argument(node, "idempotent", "key", self.prepared)
            if key is None:
                if name in KEY_REQUIRED:
                    raise FieldError(
                        f'{name} requires an idempotency key: add @idempotent(key: "<uuid>")',
                        "BAD_REQUEST",
                    )
                return resolve(args)
            fingerprint = json.dumps(args, sort_keys=True, default=str)
            kept = self.ledger.answers.get((name, str(key)))
            if kept is None:
                answer = resolve(args)
                self.ledger.keep((name, str(key)), fingerprint, answer)
                return answer
            if kept[0] != fingerprint:
                return _mismatch(name)
            return kept[1]

        return run

    def set_quantities(self, args: dict[str, Any]) -> Any:
        """`inventorySetQuantities` (stock_set.py)."""
        return set_quantities(self.view, args)

    # ---- fulfilment and cancellation -------------------------------------------------------

    def fulfillment_create(self, args: dict[str, Any]) -> Any:
        """`fulfillmentCreate` on fulfilment orders of one order and one location."""
        data = args["fulfillment"]
        store = self.view.store
        groups: list[dict[str, Any]] = data.get("lineItemsByFulfillmentOrder") or []
        base = ["fulfillment", "lineItemsByFulfillmentOrder"]

        def refuse(message: str, path: list[str]) -> Any:
            return {
                "__typename": "FulfillmentCreatePayload",
                "fulfillment": None,
                "userErrors": [user_error("UserError", message, path)],
            }

        if not groups:
            return refuse("Line items by fulfillment order can't be blank.", base)
        picks: list[tuple[FulfillmentOrder, list[tuple[FulfillmentOrderLine, int]]]] = []
        for i, group in enumerate(groups):
            number = number_or_none(group.get("fulfillmentOrderId"), "FulfillmentOrder")
            fulfillment_order = store.fulfillment_orders.get(number or -1)
            if fulfillment_order is None:
                return refuse(
                    "Fulfillment order does not exist.", [*base, str(i), "fulfillmentOrderId"]
                )
            if fulfillment_order.status not in ("OPEN", "IN_PROGRESS"):
                return refuse(
                    f"Fulfillment order {fulfillment_order.id} has an unfulfillable status= "
                    f"{fulfillment_order.status.lower()}.",
                    [*base, str(i), "fulfillmentOrderId"],
                )
            if picks and fulfillment_order.order_id != picks[0][0].order_id:
                return refuse("All fulfillment orders must belong to the same order.", base)
            if picks and fulfillment_order.location_id != picks[0][0].location_id:
                return refuse("All fulfillment orders must be assigned to the same location.", base)
            by_id = {line.id: line for line in fulfillment_order.lines}
            asked = group.get("fulfillmentOrderLineItems")
            if not asked:
                lines = [
                    (line, line.remaining) for line in fulfillment_order.lines if line.remaining
                ]
            else:
                lines = []
                for j, wanted in enumerate(asked):
                    line = by_id.get(
                        number_or_none(wanted.get("id"), "FulfillmentOrderLineItem") or -1
                    )
                    units = int(wanted.get("quantity", 0))
                    path = [*base, str(i), "fulfillmentOrderLineItems", str(j)]
                    if line is None:
                        return refuse("Invalid fulfillment order line item id.", [*path, "id"])
                    if not 0 < units <= line.remaining:
                        return refuse(
                            "Invalid fulfillment order line item quantity requested.",
                            [*path, "quantity"],
                        )
                    lines.append((line, units))
            picks.append((fulfillment_order, lines))
        tracking = data.get("trackingInfo") or {}
        fulfillment = store.fulfill(
            store.orders[picks[0][0].order_id],
            picks,
            company=tracking.get("company"),
            number=tracking.get("number") or next(iter(tracking.get("numbers") or ()), None),
            url=tracking.get("url") or next(iter(tracking.get("urls") or ()), None),
            notify_customer=bool(data.get("notifyCustomer", False)),
            source="api",
        )
        return {
            "__typename": "FulfillmentCreatePayload",
            "fulfillment": self.view.fulfillment(fulfillment),
            "userErrors": [],
        }

    def order_cancel(self, args: dict[str, Any]) -> Any:
        """`orderCancel`: applied at once, answered as Shopify does, with a job not yet done."""
        store = self.view.store
        number = number_or_none(args.get("orderId"), "Order")
        order = store.orders.get(number or -1)

        def refuse(message: str, code: str, path: list[str]) -> Any:
            return {
                "__typename": "OrderCancelPayload",
                "job": None,
                "orderCancelUserErrors": [user_error("OrderCancelUserError", message, path, code)],
                "userErrors": [user_error("UserError", message, path)],
            }

        if order is None:
            return refuse("Order does not exist.", "NOT_FOUND", ["orderId"])
        method = args.get("refundMethod") or {}
        refund = bool(args.get("refund") or method.get("originalPaymentMethodsRefund"))
        try:
            store.cancel(
                order,
                reason=str(args.get("reason", "OTHER")),
                restock=bool(args.get("restock")),
                refund=refund,
                staff_note=args.get("staffNote"),
            )
        except StoreError as err:
            return refuse(f"Cannot cancel the order: {err.message}.", "INVALID", ["orderId"])
        return {
            "__typename": "OrderCancelPayload",
            "job": {
                "__typename": "Job",
                "id": gid("Job", store.next_id("Job")),
                "done": False,
                "query": None,
            },
            "orderCancelUserErrors": [],
            "userErrors": [],
        }

    # ---- webhooks --------------------------------------------------------------------------

    def subscription_create(self, args: dict[str, Any]) -> Any:
        """`webhookSubscriptionCreate` with an `uri` (or the older `callbackUrl`)."""
        store = self.view.store
        data = args["webhookSubscription"]
        uri = data.get("uri") or data.get("callbackUrl")

        def refuse(message: str, path: list[str]) -> Any:
            return {
                "__typename": "WebhookSubscriptionCreatePayload",
                "webhookSubscription": None,
                "userErrors": [user_error("UserError", message, path)],
            }

        if not uri:
            return refuse("Address can't be blank", ["webhookSubscription", "uri"])
        problem = _uri_problem(str(uri))
        if problem:
            return refuse(problem, ["webhookSubscription", "uri"])
        if data.get("format", "JSON") != "JSON":
            return refuse(
                "Format is not supported by the sandbox (JSON only)",
                ["webhookSubscription", "format"],
            )
        topic = str(args["topic"])
        if any(s.topic == topic and s.uri == uri for s in store.subscriptions.values()):
            return refuse(
                "Address for this topic has already been taken", ["webhookSubscription", "uri"]
            )
        now = store.now()
        subscription = Subscription(
            id=store.next_id("WebhookSubscription"),
            topic=topic,
            uri=str(uri),
            api_version=self.view.api_version,
            created_at=now,
            updated_at=now,
            include_fields=list(data.get("includeFields") or ()),
            filter=data.get("filter"),
        )
        store.subscriptions[subscription.id] = subscription
        return {
            "__typename": "WebhookSubscriptionCreatePayload",
            "webhookSubscription": self.view.subscription(subscription),
            "userErrors": [],
        }

    def subscription_delete(self, args: dict[str, Any]) -> Any:
        """`webhookSubscriptionDelete`."""
        store = self.view.store
        number = number_or_none(args.get("id"), "WebhookSubscription")
        if number not in store.subscriptions:
            return {
                "__typename": "WebhookSubscriptionDeletePayload",
                "deletedWebhookSubscriptionId": None,
                "userErrors": [
                    user_error("UserError", "Webhook subscription does not exist", ["id"])
                ],
            }
        del store.subscriptions[number]
        return {
            "__typename": "WebhookSubscriptionDeletePayload",
            "deletedWebhookSubscriptionId": args["id"],
            "userErrors": [],
        }


def _mismatch(name: str) -> dict[str, Any]:
    typename = f"{name[0].upper()}{name[1:]}UserError" if name in KEY_REQUIRED else "UserError"
    error = user_error(
        typename,
        "The same idempotency key cannot be used with different operation parameters.",
        [],
        "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
    )
    payload: dict[str, Any] = {"__typename": f"{name[0].upper()}{name[1:]}Payload"}
    for empty in ("inventoryAdjustmentGroup", "fulfillment", "job", "webhookSubscription"):
        payload[empty] = None
    payload["deletedWebhookSubscriptionId"] = None
    payload["userErrors"] = [error]
    payload["orderCancelUserErrors"] = [error]
    return payload


def _uri_problem(uri: str) -> str | None:
    parts = urlsplit(uri)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return None  # the sandbox delivers to loopback receivers over plain HTTP
    if parts.scheme in ("pubsub", "arn"):
        return "Address is not served by the sandbox (https or loopback http only)"
    return (
        "Address protocol http:// is not supported"
        if parts.scheme == "http"
        else "Address is invalid"
    )
