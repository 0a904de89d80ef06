"""Signed push notifications as eBay sends them: the endpoint challenge first, then messages
whose X-EBAY-SIGNATURE verifies with the key getPublicKey serves, exactly the way eBay's own
signed samples verify, and the knobs that drop, duplicate, mis-sign and retry them."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sandbox.ebay.const import API_SCOPE
from tests.sandbox.ebay.conftest import HOOK_URL, VERIFICATION_TOKEN, Account
from tests.support.specs import specs_dir

pytestmark = pytest.mark.anyio


def verify(message: Any, signature_header: str, key_answer: dict[str, str]) -> bool:
    """eBay's SDK check: decode the header, wrap the served key's PEM body, verify ECDSA/SHA1
    over the message re-serialised as compact JSON."""
    header = json.loads(base64.b64decode(signature_header))
    body = key_answer["key"].replace("-----BEGIN PUBLIC KEY-----", "")
    body = body.replace("-----END PUBLIC KEY-----", "")
    pem = f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n".encode()
    key = serialization.load_pem_public_key(pem)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert (header["alg"], header["digest"]) == ("ecdsa", "SHA1")
    signed = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    try:
        key.verify(base64.b64decode(header["signature"]), signed, ec.ECDSA(hashes.SHA1()))  # noqa: S303
    except InvalidSignature:
        return False
    return True


def test_the_verifier_reads_ebays_own_samples_as_ebay_does() -> None:
    vectors = json.loads(
        (specs_dir("test-vectors") / "ebay_notification_signature_vectors.json").read_text()
    )
    valid = vectors["vectors"][0]
    data = specs_dir("ebay", "event-notification-sdks", "java", "src", "test", "java", "com")
    data = data / "ebay" / "commerce" / "notification" / "data"
    message = json.loads((data / "message.json").read_text())
    tampered = json.loads((data / "tampered_message.json").read_text())
    key = valid["public_key_response"]
    assert verify(message, valid["signature_header"], key)
    assert not verify(tampered, valid["signature_header"], key)
    mismatch = json.loads(
        (specs_dir("ebay", "event-notification-sdks", "nodejs") / "test.json").read_text()
    )["SIGNATURE_MISMATCH"]
    assert not verify(mismatch["message"], mismatch["signature"], key)


async def public_key(account: Account, kid: str) -> httpx.Response:
    token = await account.token("client_credentials", scope=API_SCOPE)
    return await account.rest("GET", f"/commerce/notification/v1/public_key/{kid}", token=token)


async def test_an_order_confirmation_is_signed_so_that_ebays_check_passes(
    account: Account,
) -> None:
    await account.subscribe()
    await account.seed({"sku": "A", "quantity": 5}, {"sku": "B", "quantity": 5})
    placed = await account.order(A=1, B=2)
    await account.settle()

    assert len(account.receiver.posts) == 2  # one per line item, as eBay sends them
    for request in account.receiver.posts:
        assert request.method == "POST" and str(request.url) == HOOK_URL
        assert request.headers["content-type"] == "application/json"
        message = json.loads(request.content)
        assert request.content != json.dumps(message, separators=(",", ":")).encode()  # indented
        kid = json.loads(base64.b64decode(request.headers["x-ebay-signature"]))["kid"]
        key = await public_key(account, kid)
        assert key.status_code == 200
        assert key.json()["algorithm"] == "ECDSA" and key.json()["digest"] == "SHA1"
        assert "\n" not in key.json()["key"]  # eBay's layout: PEM body on one line
        assert verify(message, request.headers["x-ebay-signature"], key.json())
        assert message["metadata"] == {
            "topic": "ORDER_CONFIRMATION",
            "schemaVersion": "1.0",
            "deprecated": False,
        }
        notification = message["notification"]
        assert notification["data"]["orderId"] == placed["order_id"]
        assert notification["publishAttemptCount"] == 1
        assert notification["eventDate"] == "2026-05-01T12:00:00.000Z"
        tampered = json.loads(request.content)
        tampered["notification"]["data"]["quantity"] = 99
        assert not verify(tampered, request.headers["x-ebay-signature"], key.json())


async def test_the_endpoint_must_answer_the_challenge_first(account: Account) -> None:
    account.receiver.wrong_challenge = True
    response = await account.http.post(
        "/_sandbox/notifications",
        json={"endpoint": HOOK_URL, "verification_token": VERIFICATION_TOKEN},
    )
    assert response.status_code == 409
    assert "challenge" in response.json()["error"]
    await account.seed({"sku": "A", "quantity": 5})
    await account.control("POST", "/faults", {"notifications": {"retry_delays_s": []}})
    await account.order(A=1)
    await account.settle()
    assert account.receiver.posts == []  # nothing pushed to an unverified endpoint
    (delivery,) = (await account.control("GET", "/notifications"))["deliveries"]
    assert delivery["state"] == "failed" and delivery["statuses"] == ["endpoint not verified"]

    account.receiver.wrong_challenge = False
    shown = await account.subscribe()
    assert shown["endpoint"]["verified"] is True
    assert len(account.receiver.challenges) == 3  # the configure, the retry, the fix


async def test_a_failed_delivery_is_retried_and_signed_again(account: Account) -> None:
    await account.subscribe()
    await account.control("POST", "/faults", {"notifications": {"retry_delays_s": [0.01, 0.01]}})
    await account.seed({"sku": "A", "quantity": 5})
    account.receiver.statuses = [500, 503]
    await account.order(A=1)
    await account.settle()

    first, second, third = (json.loads(r.content) for r in account.receiver.posts)
    ids = {m["notification"]["notificationId"] for m in (first, second, third)}
    assert len(ids) == 1
    assert [m["notification"]["publishAttemptCount"] for m in (first, second, third)] == [1, 2, 3]
    key = (await public_key(account, account.sandbox.keys.current_kid)).json()
    assert verify(third, account.receiver.posts[2].headers["x-ebay-signature"], key)
    (delivery,) = (await account.control("GET", "/notifications"))["deliveries"]
    assert delivery["state"] == "delivered" and delivery["statuses"] == [500, 503, 204]


async def test_knobs_drop_duplicate_and_mis_sign_deliveries(account: Account) -> None:
    await account.subscribe()
    await account.seed({"sku": "A", "quantity": 50})
    await account.control("POST", "/faults", {"notifications": {"drop_rate": 1.0}})
    await account.order(A=1)
    await account.settle()
    assert account.receiver.posts == []

    await account.control("POST", "/faults", {"notifications": {"duplicate_rate": 1.0}})
    await account.order(A=1)
    await account.settle()
    first, second = account.receiver.messages()
    assert first["notification"]["notificationId"] == second["notification"]["notificationId"]

    await account.control("POST", "/faults", {"notifications": {"bad_signature_rate": 1.0}})
    await account.order(A=1)
    await account.settle()
    forged = account.receiver.posts[-1]
    kid = json.loads(base64.b64decode(forged.headers["x-ebay-signature"]))["kid"]
    key = (await public_key(account, kid)).json()
    assert not verify(json.loads(forged.content), forged.headers["x-ebay-signature"], key)
    counts = (await account.control("GET", "/notifications"))["counts"]
    assert counts["dropped"] == 1 and counts["duplicated"] == 1


async def test_rotated_keys_stay_served_and_unknown_kids_are_not(account: Account) -> None:
    old = account.sandbox.keys.current_kid
    new = (await account.control("POST", "/rotate-key"))["kid"]
    assert new != old
    for kid in (old, new):
        assert (await public_key(account, kid)).status_code == 200
    missing = await public_key(account, "00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    used = (await account.control("GET", "/quotas"))["apis"]["notification"]["used"]
    assert used == 3  # every getPublicKey counts: receivers must cache keys


async def test_account_deletion_names_the_buyer(account: Account) -> None:
    await account.subscribe()
    await account.seed({"sku": "A", "quantity": 5})
    placed = await account.order(A=1)
    await account.settle()
    await account.control("POST", "/account-deletion", {"user_id": placed["buyer_user_id"]})
    await account.settle()
    message = account.receiver.messages()[-1]
    assert message["metadata"]["topic"] == "MARKETPLACE_ACCOUNT_DELETION"
    data = message["notification"]["data"]
    assert data["userId"] == placed["buyer_user_id"] and data["username"] == "jo_buyer"
    assert data["eiasToken"]
    again = await account.http.post(
        "/_sandbox/account-deletion", json={"user_id": placed["buyer_user_id"]}
    )
    assert again.status_code == 409


async def test_marked_shipped_is_pushed_for_each_shipped_line(account: Account) -> None:
    await account.subscribe()
    await account.seed({"sku": "A", "quantity": 5})
    placed = await account.order(A=1)
    await account.control(
        "POST", "/ship", {"order_id": placed["order_id"], "carrier": "USPS", "tracking": "94001"}
    )
    await account.settle()
    message = account.receiver.messages()[-1]
    assert message["metadata"]["topic"] == "ITEM_MARKED_SHIPPED"
    assert message["notification"]["data"]["orderId"] == placed["order_id"]
