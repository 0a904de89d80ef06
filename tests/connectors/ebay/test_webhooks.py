"""eBay notifications: the signature vectors and eBay's own signed sample verify as eBay's SDKs say
(valid passes; tampered and mismatched are refused before anything is kept), the endpoint check
answers the vector, the public key is fetched once an hour per kid, and each topic says what to
do."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from connectors.ebay import (
    Notification,
    NotificationVerificationError,
    account_deletion,
    buyer_ref,
    challenge_response,
    order_hint,
)
from connectors.ebay.webhooks import (
    NotificationVerifier,
    PublicKeyCache,
    parse_signature_header,
    read_notification,
    signed_bytes,
)
from connectors.errors import NotFoundError, RetryableError
from tests.connectors.ebay.fake_ebay import FakeClock, FakeEbay, connect
from tests.support.specs import specs_dir

pytestmark = pytest.mark.anyio
JAVA_DATA = ("ebay", "event-notification-sdks", "java", "src", "test", "java", "com", "ebay")
KEY_PATH = "/commerce/notification/v1/public_key/9936261a-7d7b-4621-a0f1-96ccb428af49"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _vectors() -> dict[str, Any]:
    path = specs_dir("test-vectors") / "ebay_notification_signature_vectors.json"
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _java(name: str) -> bytes:
    folder = specs_dir(*JAVA_DATA, "commerce", "notification", "data")
    return (folder / name).read_bytes()


def _node() -> dict[str, Any]:
    path = specs_dir("ebay", "event-notification-sdks", "nodejs") / "test.json"
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


class Keys:
    """getPublicKey answered from the vectors' public key response, counted."""

    def __init__(self, answer: dict[str, Any] | None) -> None:
        self.answer = answer
        self.asked: list[str] = []

    async def __call__(self, kid: str) -> dict[str, Any]:
        self.asked.append(kid)
        if self.answer is None:
            raise NotFoundError("no such key")
        return self.answer


def _verifier(clock: FakeClock | None = None) -> tuple[NotificationVerifier, Keys]:
    keys = Keys(_vectors()["vectors"][0]["public_key_response"])
    cache = PublicKeyCache(keys, clock=clock or FakeClock())
    return NotificationVerifier(cache), keys


def _header() -> dict[str, str]:
    return {"X-EBAY-SIGNATURE": _vectors()["vectors"][0]["signature_header"]}


async def test_the_valid_vector_verifies_over_the_compact_reserialised_message() -> None:
    vector = _vectors()["vectors"][0]
    body = _java("message.json")  # pretty-printed: the signature is over the compact form
    assert signed_bytes(json.loads(body)).decode() == vector["signed_bytes"]
    assert body.decode() != vector["signed_bytes"]
    verifier, _ = _verifier()
    notification = await verifier.verify(_header(), body)
    assert notification.topic == "MARKETPLACE_ACCOUNT_DELETION"
    assert notification.notification_id == (
        "49feeaeb-4982-42d9-a377-9645b8479411_33f7e043-fed8-442b-9d44-791923bd9a6d"
    )
    assert notification.delivery_id == f"notification:{notification.notification_id}"
    assert not notification.is_redelivery


async def test_the_header_decodes_as_the_vector_says() -> None:
    vector = _vectors()["vectors"][0]
    header = parse_signature_header(vector["signature_header"])
    decoded = vector["decoded_header"]
    assert (header.alg, header.kid, header.digest) == (
        decoded["alg"],
        decoded["kid"],
        decoded["digest"],
    )
    assert header.signature == base64.b64decode(decoded["signature"])


async def test_the_tampered_message_is_refused() -> None:
    verifier, _ = _verifier()
    with pytest.raises(NotificationVerificationError, match="does not match"):
        await verifier.verify(_header(), _java("tampered_message.json"))


async def test_the_mismatched_signature_is_refused_and_the_node_sdk_valid_case_passes() -> None:
    node = _node()
    verifier, _ = _verifier()
    mismatch = node["SIGNATURE_MISMATCH"]
    with pytest.raises(NotificationVerificationError, match="does not match"):
        await verifier.verify(
            {"x-ebay-signature": mismatch["signature"]}, json.dumps(mismatch["message"]).encode()
        )
    valid = node["VALID"]
    verified = await verifier.verify(
        {"x-ebay-signature": valid["signature"]}, json.dumps(valid["message"], indent=4).encode()
    )
    assert verified.data["userId"] == "ma8vp1jySJC"


async def test_the_endpoint_challenge_answers_the_vector() -> None:
    challenge = _vectors()["endpoint_challenge"]
    assert (
        challenge_response(
            challenge["challenge_code"], challenge["verification_token"], challenge["endpoint"]
        )
        == challenge["expected_challengeResponse"]
    )


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({}, "missing X-EBAY-SIGNATURE"),
        ({"X-EBAY-SIGNATURE": "not base64 !"}, "not eBay's format"),
        ({"X-EBAY-SIGNATURE": base64.b64encode(b'{"kid": "k"}').decode()}, "not eBay's format"),
        (
            {
                "X-EBAY-SIGNATURE": base64.b64encode(
                    json.dumps(
                        {"alg": "RSA", "kid": "k", "signature": "AA==", "digest": "SHA256"}
                    ).encode()
                ).decode()
            },
            "unexpected algorithm",
        ),
        (
            {
                "X-EBAY-SIGNATURE": base64.b64encode(
                    json.dumps(
                        {"alg": "ecdsa", "kid": "../x", "signature": "AA==", "digest": "SHA1"}
                    ).encode()
                ).decode()
            },
            "unusable key id",
        ),
    ],
)
async def test_a_malformed_header_is_refused_before_any_key_is_fetched(
    headers: dict[str, str], problem: str
) -> None:
    verifier, keys = _verifier()
    with pytest.raises(NotificationVerificationError, match=problem):
        await verifier.verify(headers, _java("message.json"))
    assert keys.asked == []


async def test_a_body_that_is_not_json_is_refused() -> None:
    verifier, _ = _verifier()
    with pytest.raises(NotificationVerificationError, match="not JSON"):
        await verifier.verify(_header(), b"<xml/>")


async def test_the_key_is_fetched_once_an_hour_and_an_unknown_kid_is_refused() -> None:
    clock = FakeClock()
    verifier, keys = _verifier(clock)
    body = _java("message.json")
    await verifier.verify(_header(), body)
    clock.advance(3599)
    await verifier.verify(_header(), body)
    assert len(keys.asked) == 1
    clock.advance(2)
    await verifier.verify(_header(), body)
    assert len(keys.asked) == 2

    unknown = Keys(None)
    refusing = NotificationVerifier(PublicKeyCache(unknown, clock=clock))
    for _ in range(3):
        with pytest.raises(NotificationVerificationError, match="no public key"):
            await refusing.verify(_header(), body)
    assert len(unknown.asked) == 1  # an unknown kid is remembered for a while


async def test_the_connector_fetches_the_key_with_the_application_token() -> None:
    ebay = FakeEbay()
    ebay.on("GET", KEY_PATH, _vectors()["vectors"][0]["public_key_response"])
    connector = connect(ebay)
    notification = await connector.verify_notification(_header(), _java("message.json"))
    assert notification.topic == "MARKETPLACE_ACCOUNT_DELETION"
    (fetch,) = ebay.calls("GET", KEY_PATH)
    assert fetch.headers["Authorization"].startswith("Bearer app-token-")
    (grant,) = ebay.calls("POST", "/identity/v1/oauth2/token")
    assert b"grant_type=client_credentials" in grant.content
    await connector.aclose()


async def test_a_key_that_cannot_be_fetched_now_asks_ebay_to_deliver_again() -> None:
    ebay = FakeEbay()
    ebay.on("GET", KEY_PATH, httpx.Response(503))
    connector = connect(ebay, attempts=1)
    with pytest.raises(RetryableError):
        await connector.verify_notification(_header(), _java("message.json"))
    await connector.aclose()


def _notification(topic: str, data: dict[str, Any], attempts: int = 1) -> Notification:
    return read_notification(
        {
            "metadata": {"topic": topic, "schemaVersion": "1.0", "deprecated": False},
            "notification": {
                "notificationId": "n-1",
                "eventDate": "2026-03-04T20:00:00.000Z",
                "publishDate": "2026-03-04T20:00:01.000Z",
                "publishAttemptCount": attempts,
                "data": data,
            },
        }
    )


def test_an_account_deletion_names_the_buyer_refs_of_its_user_id_and_username() -> None:
    deletion = account_deletion(
        _notification(
            "MARKETPLACE_ACCOUNT_DELETION",
            {"username": "test_user", "userId": "ma8vp1jySJC", "eiasToken": "nY+sHZ2P"},
        )
    )
    assert deletion is not None
    assert deletion.user_id == "ma8vp1jySJC"
    assert deletion.buyer_refs == {buyer_ref("ma8vp1jySJC"), buyer_ref("test_user")}
    assert "ma8vp1jySJC" not in repr(deletion) and "test_user" not in repr(deletion)
    assert order_hint(_notification("MARKETPLACE_ACCOUNT_DELETION", {"userId": "x"})) is None


def test_order_topics_name_the_order_to_fetch() -> None:
    confirmed = _notification("ORDER_CONFIRMATION", {"orderId": "12-34567-89012"}, attempts=2)
    assert order_hint(confirmed) == "12-34567-89012"
    assert confirmed.is_redelivery
    shipped = _notification("ITEM_MARKED_SHIPPED", {"order": {"orderId": "12-0000-1"}})
    assert order_hint(shipped) == "12-0000-1"
    assert account_deletion(shipped) is None
    assert order_hint(_notification("ITEM_PRICE_REVISION", {"orderId": "x"})) is None


def test_an_envelope_without_an_id_or_topic_is_refused() -> None:
    with pytest.raises(NotificationVerificationError, match="notificationId"):
        read_notification({"metadata": {"topic": "X"}, "notification": {}})
    with pytest.raises(NotificationVerificationError, match="no metadata"):
        read_notification({"notification": {"notificationId": "n"}})
