"""eBay notifications through the daemon's webhook app and inbox worker, on a real store.

Two set-ups, both in-process through httpx's ASGI transport (nothing leaves the process):
- eBay's own vectors against the receiver, the public key answered from the vectors: what is
  accepted (204, stored once per notificationId) and refused (412, nothing stored);
- the eBay sandbox (sandbox/ebay) as the marketplace: it challenges our endpoint, signs its
  notifications with a key it serves by kid, and answers the connector's getPublicKey and
  getOrder. Buyers order, the hints bring the orders in, a buyer closes their account, and the
  store's rows are read to prove their personal data is gone and everything else is intact.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from connectors.ebay import EbayConnector, EbaySettings
from connectors.ebay.webhook_handler import EbayWebhookHandler
from connectors.ebay.webhooks import PublicKeyCache
from connectors.errors import NotFoundError, RetryableError
from sandbox.ebay import EbayOptions, EbaySandbox, create_app
from sync.buyer_data import ship_to_of
from sync.channels import register_channels
from sync.db import Database
from sync.http.webhook_receiver import create_receiver
from sync.http.webhooks import create_webhook_app
from sync.inbox import delivery_body
from sync.inbox_worker import InboxChannel, InboxWorker
from sync.ingest import ChannelRef
from sync.models import Event, InboxState, WebhookDelivery
from sync.models import Order as OrderRow
from tests.support.specs import specs_dir

pytestmark = pytest.mark.anyio
CHANNEL = "ebay-main"
HOOK_URL = f"http://127.0.0.1:8080/webhooks/{CHANNEL}"
TOKEN = "receiver-verification-token-0123456789abcdef"
CLIENT_ID = "Sandbox-chsync-SBX-notify01"
CLIENT_SECRET = "SBX-notify-client-secret"
REFRESH_TOKEN = "v^1.1#i^1#r^1#notify-refresh-token"
SAMPLE_ID = "49feeaeb-4982-42d9-a377-9645b8479411_33f7e043-fed8-442b-9d44-791923bd9a6d"
JAVA_DATA = ("ebay", "event-notification-sdks", "java", "src", "test", "java", "com", "ebay")

JO: dict[str, Any] = {
    "username": "jo_leaving_77",
    "name": "Jo Erasedperson",
    "email": "jo.leaving@example.com",
    "phone": "555-0100-77",
    "address": {
        "address_line1": "7 Forgetme Lane",
        "city": "Oblivionville",
        "postal_code": "99177",
        "country_code": "US",
    },
}
SAM: dict[str, Any] = {
    "username": "sam_staying_42",
    "name": "Sam Keptperson",
    "email": "sam.staying@example.com",
    "address": {
        "address_line1": "12 Stayhere Road",
        "city": "Keeptown",
        "postal_code": "10042",
        "country_code": "US",
    },
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def vectors() -> dict[str, Any]:
    path = specs_dir("test-vectors") / "ebay_notification_signature_vectors.json"
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def java(name: str) -> bytes:
    return (specs_dir(*JAVA_DATA, "commerce", "notification", "data") / name).read_bytes()


def node() -> dict[str, Any]:
    path = specs_dir("ebay", "event-notification-sdks", "nodejs") / "test.json"
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def inbox(db: Database) -> list[tuple[str, str, InboxState]]:
    with db.read_session() as session:
        rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))
        return [(row.delivery_id, row.topic, row.state) for row in rows]


def register(db: Database) -> int:
    with db.session() as session:
        return register_channels(session, {CHANNEL: ("ebay", True)})[CHANNEL]


# eBay's vectors against the receiver ----------------------------------------------------------


class VectorKeys:
    """getPublicKey answered with the vectors' key (or failing as told)."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure

    async def __call__(self, kid: str) -> dict[str, Any]:
        if self.failure is not None:
            raise self.failure
        answer: dict[str, Any] = vectors()["vectors"][0]["public_key_response"]
        return answer


@dataclass
class VectorRig:
    db: Database
    app: Starlette
    woken: list[int]

    async def send(
        self, method: str, *, header: str | None = None, body: bytes = b"", query: str = ""
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if header is not None:
            headers["X-EBAY-SIGNATURE"] = header
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(
                method, f"/webhooks/{CHANNEL}{query}", content=body, headers=headers
            )


def vector_rig(
    db: Database, keys: VectorKeys | None = None, *, endpoint: str | None = None
) -> VectorRig:
    challenge = vectors()["endpoint_challenge"]
    hook = EbayWebhookHandler(
        PublicKeyCache(keys or VectorKeys()),
        verification_token=challenge["verification_token"],
        endpoint_url=endpoint,
    )
    woken: list[int] = []
    receiver = create_receiver(
        db,
        channel=CHANNEL,
        channel_id=register(db),
        handler=hook,
        on_recorded=lambda: woken.append(1),
    )
    return VectorRig(db, create_webhook_app({CHANNEL: receiver}), woken)


def vector_cases() -> list[Any]:
    valid = vectors()["vectors"][0]["signature_header"]
    sdk = node()
    return [
        pytest.param(valid, java("message.json"), 204, id="VALID-java-sample"),
        pytest.param(valid, java("tampered_message.json"), 412, id="TAMPERED"),
        pytest.param(
            sdk["VALID"]["signature"],
            json.dumps(sdk["VALID"]["message"], indent=4).encode(),
            204,
            id="VALID-node",
        ),
        pytest.param(
            sdk["SIGNATURE_MISMATCH"]["signature"],
            json.dumps(sdk["SIGNATURE_MISMATCH"]["message"]).encode(),
            412,
            id="SIGNATURE_MISMATCH-node",
        ),
        pytest.param(
            sdk["INVALID"]["signature"],
            json.dumps(sdk["INVALID"]["message"]).encode(),
            412,
            id="INVALID-node",
        ),
        pytest.param(None, java("message.json"), 412, id="no-header"),
    ]


@pytest.mark.parametrize(("header", "body", "status"), vector_cases())
async def test_each_vector_is_answered_as_ebay_expects_and_only_valid_ones_are_stored(
    database: Database, header: str | None, body: bytes, status: int
) -> None:
    rig = vector_rig(database)
    answer = await rig.send("POST", header=header, body=body)
    assert answer.status_code == status, answer.text
    if status == 204:
        assert answer.content == b""
        assert inbox(database) == [
            (f"notification:{SAMPLE_ID}", "MARKETPLACE_ACCOUNT_DELETION", InboxState.RECEIVED)
        ]
        assert rig.woken == [1]
    else:
        assert "test_user" not in answer.text and "ma8vp1jySJC" not in answer.text
        assert inbox(database) == []
        assert rig.woken == []


async def test_a_redelivered_notification_is_stored_once(database: Database) -> None:
    rig = vector_rig(database)
    header = vectors()["vectors"][0]["signature_header"]
    for _ in range(3):
        answer = await rig.send("POST", header=header, body=java("message.json"))
        assert answer.status_code == 204
    assert len(inbox(database)) == 1
    assert rig.woken == [1]


async def test_a_key_that_cannot_be_fetched_asks_ebay_to_deliver_again(
    database: Database,
) -> None:
    header = vectors()["vectors"][0]["signature_header"]
    down = vector_rig(database, VectorKeys(RetryableError("getPublicKey: HTTP 503")))
    answer = await down.send("POST", header=header, body=java("message.json"))
    assert answer.status_code == 503
    unknown = vector_rig(database, VectorKeys(NotFoundError("no such key")))
    answer = await unknown.send("POST", header=header, body=java("message.json"))
    assert answer.status_code == 412
    assert inbox(database) == []


async def test_the_endpoint_check_answers_the_vector(database: Database) -> None:
    challenge = vectors()["endpoint_challenge"]
    rig = vector_rig(database, endpoint=challenge["endpoint"])
    answer = await rig.send("GET", query=f"?challenge_code={challenge['challenge_code']}")
    assert answer.status_code == 200
    assert answer.json() == {"challengeResponse": challenge["expected_challengeResponse"]}
    assert (await rig.send("GET")).status_code == 405
    unset = vector_rig(database, endpoint=None)
    assert (await unset.send("GET", query="?challenge_code=abc")).status_code == 503
    assert inbox(database) == []


# The sandbox as eBay -------------------------------------------------------------------------


class Forward(httpx.AsyncBaseTransport):
    """The sandbox's way to our webhook app, set once the app exists."""

    def __init__(self) -> None:
        self.target: httpx.AsyncBaseTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert self.target is not None
        return await self.target.handle_async_request(request)


@dataclass
class Rig:
    db: Database
    channel_id: int
    sandbox: EbaySandbox
    control: httpx.AsyncClient
    connector: EbayConnector
    worker: InboxWorker

    async def call(self, method: str, path: str, body: object = None) -> Any:
        answer = await self.control.request(method, f"/_sandbox{path}", json=body)
        assert answer.is_success, answer.text
        return answer.json()

    async def order(self, buyer: dict[str, Any], **lines: int) -> dict[str, Any]:
        body = {"lines": [{"sku": s, "quantity": n} for s, n in lines.items()], "buyer": buyer}
        placed: dict[str, Any] = await self.call("POST", "/orders", body)
        return placed

    async def drain(self) -> None:
        """Until the sandbox delivered everything and the inbox processed it."""
        with anyio.fail_after(30):
            await self.sandbox.notifier.wait_idle()
            while any(state == InboxState.RECEIVED for *_, state in inbox(self.db)):
                await self.worker.process_once()


@pytest.fixture
async def rig(database: Database) -> AsyncIterator[Rig]:
    forward = Forward()
    ebay = create_app(
        EbayOptions(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh_token=REFRESH_TOKEN,
            notify_url=HOOK_URL,
            verification_token=TOKEN,
            seed=7,
        ),
        notify_transport=forward,
    )
    base = "http://127.0.0.1:9"  # never dialled: the transport is the app itself
    connector = EbayConnector(
        CHANNEL,
        EbaySettings(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh_token=REFRESH_TOKEN,
            verification_token=TOKEN,
            notification_endpoint_url=HOOK_URL,
            api_base_url=base,
            identity_url=f"{base}/identity/v1/oauth2/token",
            trading_api_url=f"{base}/ws/api.dll",
        ),
        transport=httpx.ASGITransport(app=ebay),
    )
    channel_id = register(database)
    hook = EbayWebhookHandler(
        connector.public_keys, verification_token=TOKEN, endpoint_url=HOOK_URL
    )
    worker = InboxWorker(database, [InboxChannel(ChannelRef(channel_id, CHANNEL), hook, connector)])
    app = create_webhook_app(
        {CHANNEL: create_receiver(database, channel=CHANNEL, channel_id=channel_id, handler=hook)}
    )
    forward.target = httpx.ASGITransport(app=app)
    sandbox: EbaySandbox = ebay.state.sandbox
    control = httpx.AsyncClient(transport=httpx.ASGITransport(app=ebay), base_url=base)
    rig = Rig(database, channel_id, sandbox, control, connector, worker)
    await rig.call("POST", "/listings", {"listings": [{"sku": "A", "quantity": 50}]})
    await rig.call("POST", "/listings", {"listings": [{"sku": "B", "quantity": 50}]})
    try:
        yield rig
    finally:
        await control.aclose()
        await sandbox.aclose()
        await connector.aclose()


def facts(db: Database) -> dict[str, Any]:
    """What the seller's books need of each order, by eBay order id."""
    with db.read_session() as session:
        return {
            row.external_id: (
                row.number,
                row.status,
                row.currency,
                row.total,
                row.channel_created_at,
                sorted(
                    (line.external_line_id, line.sku, line.quantity, line.unit_price)
                    for line in row.lines
                ),
            )
            for row in session.scalars(select(OrderRow))
        }


def personal(db: Database) -> dict[str, tuple[Any, Any, Any]]:
    """(ship_to, buyer_ref, pii_erased_at) by eBay order id."""
    with db.read_session() as session:
        return {
            row.external_id: (ship_to_of(row), row.buyer_ref, row.pii_erased_at)
            for row in session.scalars(select(OrderRow))
        }


def everything_stored_about(db: Database, order_ids: set[str]) -> str:
    """Every column of those orders and their lines and events, and every inbox body, as text."""
    with db.read_session() as session:
        texts: list[str] = []
        for row in session.scalars(select(OrderRow).where(OrderRow.external_id.in_(order_ids))):
            texts.extend(repr(getattr(row, c.key)) for c in OrderRow.__table__.columns)
            texts.append(repr(ship_to_of(row)))
            for line in row.lines:
                texts.extend(repr(getattr(line, c.key)) for c in line.__table__.columns)
            events = session.scalars(select(Event).where(Event.order_id == row.id))
            texts.extend(repr(event.data) for event in events)
        texts.extend(
            delivery_body(row).decode() for row in session.scalars(select(WebhookDelivery))
        )
        return "\n".join(texts)


async def test_an_account_deletion_erases_that_buyers_data_and_keeps_the_facts(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    jo_first = await rig.order(JO, A=1, B=2)
    jo_second = await rig.order(JO, A=3)
    sam = await rig.order(SAM, B=1)
    await rig.drain()
    jo_orders = {jo_first["order_id"], jo_second["order_id"]}
    before = facts(rig.db)
    assert set(before) == jo_orders | {sam["order_id"]}  # the hints brought every order in
    assert all(ship_to and ref for ship_to, ref, _ in personal(rig.db).values())
    assert "Forgetme Lane" in everything_stored_about(rig.db, jo_orders)  # the check can fail

    user_id = jo_first["buyer_user_id"]
    assert jo_second["buyer_user_id"] == user_id
    eias = rig.sandbox.store.buyers[user_id].eias_token
    await rig.call("POST", "/account-deletion", {"user_id": user_id})
    await rig.drain()

    stored = everything_stored_about(rig.db, jo_orders)
    for value in (
        JO["username"],
        JO["name"],
        JO["email"],
        JO["phone"],
        "Forgetme",
        "Oblivionville",
        "99177",
        user_id,
        eias,
    ):
        assert value not in stored, value
    after = personal(rig.db)
    for order_id in jo_orders:
        ship_to, ref, erased_at = after[order_id]
        assert (ship_to, ref) == (None, None) and erased_at is not None
    ship_to, ref, erased_at = after[sam["order_id"]]
    assert ship_to is not None and ship_to["name"] == SAM["name"] and ref and erased_at is None
    assert facts(rig.db) == before
    deletion = [row for row in inbox(rig.db) if row[1] == "MARKETPLACE_ACCOUNT_DELETION"]
    assert [state for *_, state in deletion] == [InboxState.PROCESSED]
    assert "erased personal data of 2 order(s)" in caplog.text
    for value in (JO["username"], user_id, JO["name"], eias):
        assert value not in caplog.text

    # A later hint about one of those orders reads it again: the data does not come back.
    await rig.call("POST", "/ship", {"order_id": jo_first["order_id"], "tracking": "TRK1"})
    await rig.drain()
    assert personal(rig.db)[jo_first["order_id"]][:2] == (None, None)
    assert facts(rig.db)[jo_first["order_id"]][1] != before[jo_first["order_id"]][1]  # shipped
    assert "Forgetme" not in everything_stored_about(rig.db, jo_orders)


async def test_duplicates_are_stored_once_and_forged_notifications_not_at_all(rig: Rig) -> None:
    await rig.call("POST", "/faults", {"notifications": {"duplicate_rate": 1.0}})
    placed = await rig.order(SAM, A=1, B=1)
    await rig.drain()
    sent = (await rig.call("GET", "/notifications"))["deliveries"]
    assert len(sent) == 4 and all(d["statuses"] == [204] for d in sent)  # two lines, each twice
    rows = inbox(rig.db)
    assert sorted(row[0] for row in rows) == sorted(
        {f"notification:{d['notification_id']}" for d in sent}
    )
    assert len(rows) == 2
    assert set(facts(rig.db)) == {placed["order_id"]}

    await rig.call(
        "POST",
        "/faults",
        {"notifications": {"bad_signature_rate": 1.0, "retry_delays_s": []}},
    )
    await rig.order(SAM, A=1)
    await rig.drain()
    forged = [d for d in (await rig.call("GET", "/notifications"))["deliveries"] if d["forged"]]
    assert forged and all(d["statuses"] == [412] for d in forged)
    assert len(inbox(rig.db)) == 2  # nothing of them kept
