"""eBay's webhook handler: every signature vector and eBay's signed sample verify as eBay's SDKs
say (after the key step), the endpoint check answers the vector, the inbox key is the
notificationId, each topic maps to its action, and the registry wires the handler to the
connector's key cache (fetched with the application token)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from config.loader import load_config
from connectors.ebay import EbayConnector, buyer_ref
from connectors.ebay.webhook_handler import EbayWebhookHandler
from connectors.ebay.webhooks import PublicKeyCache
from connectors.errors import NotFoundError, RetryableError
from connectors.registry import webhook_handler_for
from connectors.webhook_handler import (
    AnswersEndpointCheck,
    EndpointAnswers,
    EndpointCheckError,
    EraseBuyer,
    FetchOrder,
    IgnoreDelivery,
    MalformedDeliveryError,
    PreparesVerification,
    WebhookHandler,
    WebhookRefusedError,
    answers_of,
)
from tests.connectors.ebay.fake_ebay import FakeClock, FakeEbay, connect
from tests.support.daemon import DaemonConfig
from tests.support.specs import specs_dir

pytestmark = pytest.mark.anyio
JAVA_DATA = ("ebay", "event-notification-sdks", "java", "src", "test", "java", "com", "ebay")
KID = "9936261a-7d7b-4621-a0f1-96ccb428af49"
KEY_PATH = f"/commerce/notification/v1/public_key/{KID}"
VERIFICATION_TOKEN = "verification-token-0123456789-abcdefghij"
SAMPLE_ID = "49feeaeb-4982-42d9-a377-9645b8479411_33f7e043-fed8-442b-9d44-791923bd9a6d"


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


class Keys:
    """getPublicKey: the vectors' key, nothing (404), or unreachable; counts the asks."""

    def __init__(self, answer: dict[str, Any] | Exception | None) -> None:
        self.answer = answer
        self.asked: list[str] = []

    async def __call__(self, kid: str) -> dict[str, Any]:
        self.asked.append(kid)
        if isinstance(self.answer, Exception):
            raise self.answer
        if self.answer is None:
            raise NotFoundError("no such key")
        return self.answer


def handler(
    keys: Keys | None = None,
    *,
    token: str | None = VERIFICATION_TOKEN,
    url: str | None = "https://sync.example.com/webhooks/ebay",
) -> EbayWebhookHandler:
    keys = keys or Keys(vectors()["vectors"][0]["public_key_response"])
    return EbayWebhookHandler(
        PublicKeyCache(keys, clock=FakeClock()), verification_token=token, endpoint_url=url
    )


def signed(header: str) -> dict[str, str]:
    return {"X-EBAY-SIGNATURE": header, "Content-Type": "application/json"}


async def verified(hook: EbayWebhookHandler, headers: dict[str, str], body: bytes) -> Any:
    await hook.prepare(headers, body)
    return hook.verify(headers, body)


def cases() -> list[Any]:
    """(headers, body, expected) for every vector and sample the specs hold."""
    valid_header = vectors()["vectors"][0]["signature_header"]
    sdk = node()
    out = [
        pytest.param(valid_header, java("message.json"), "valid", id="VALID-java-sample"),
        pytest.param(valid_header, java("tampered_message.json"), "refused", id="TAMPERED"),
    ]
    for name, expect in (
        ("VALID", "valid"),
        ("INVALID", "refused"),
        ("SIGNATURE_MISMATCH", "refused"),
    ):
        case = sdk[name]
        body = json.dumps(case["message"], indent=4).encode()
        out.append(pytest.param(case["signature"], body, expect, id=f"{name}-node"))
    return out


@pytest.mark.parametrize(("header", "body", "expect"), cases())
async def test_every_vector_verifies_as_ebays_sdks_say(
    header: str, body: bytes, expect: str
) -> None:
    hook = handler()
    if expect == "valid":
        delivery = await verified(hook, signed(header), body)
        assert delivery.topic == "MARKETPLACE_ACCOUNT_DELETION"
        assert delivery.delivery_id == f"notification:{SAMPLE_ID}"
    else:
        with pytest.raises(WebhookRefusedError, match="does not match"):
            await verified(hook, signed(header), body)


def test_the_signed_bytes_of_the_vector_are_the_compact_sample() -> None:
    from connectors.ebay.webhooks import signed_bytes

    vector = vectors()["vectors"][0]
    assert signed_bytes(json.loads(java("message.json"))).decode() == vector["signed_bytes"]


async def test_an_unreachable_key_is_a_retry_and_an_unknown_one_a_refusal() -> None:
    sdk = node()["ERROR"]  # the node SDK's case where getPublicKey fails
    body = json.dumps(sdk["message"]).encode()
    down = handler(Keys(RetryableError("getPublicKey: 503")))
    with pytest.raises(RetryableError):
        await down.prepare(signed(sdk["signature"]), body)
    unknown = Keys(None)
    refusing = handler(unknown)
    for _ in range(2):
        with pytest.raises(WebhookRefusedError, match="no public key"):
            await refusing.prepare(signed(sdk["signature"]), body)
    assert unknown.asked == [KID]  # an unknown kid is remembered for a while


async def test_a_malformed_header_is_refused_before_any_key_is_fetched() -> None:
    keys = Keys(vectors()["vectors"][0]["public_key_response"])
    hook = handler(keys)
    for headers in ({}, {"X-EBAY-SIGNATURE": "not base64 !"}):
        with pytest.raises(WebhookRefusedError):
            await hook.prepare(headers, java("message.json"))
    assert keys.asked == []


async def test_verify_needs_the_key_step_and_refuses_a_body_that_is_not_json() -> None:
    header = vectors()["vectors"][0]["signature_header"]
    hook = handler()
    with pytest.raises(WebhookRefusedError, match="not fetched"):
        hook.verify(signed(header), java("message.json"))
    await hook.prepare(signed(header), b"<xml/>")
    with pytest.raises(WebhookRefusedError, match="not JSON"):
        hook.verify(signed(header), b"<xml/>")


def test_the_endpoint_check_answers_the_vector() -> None:
    challenge = vectors()["endpoint_challenge"]
    hook = handler(token=challenge["verification_token"], url=challenge["endpoint"])
    answer = hook.answer_check({"challenge_code": challenge["challenge_code"]})
    assert answer == {"challengeResponse": challenge["expected_challengeResponse"]}
    assert hook.answer_check({}) is None  # not a check
    with pytest.raises(WebhookRefusedError):
        hook.answer_check({"challenge_code": ""})
    with pytest.raises(EndpointCheckError, match="notification_endpoint_url"):
        handler(url=None).answer_check({"challenge_code": "x"})


def test_the_handler_speaks_the_protocols_with_ebays_statuses() -> None:
    hook = handler()
    assert isinstance(hook, WebhookHandler)
    assert isinstance(hook, PreparesVerification)
    assert isinstance(hook, AnswersEndpointCheck)
    assert answers_of(hook) == EndpointAnswers(accepted=204, refused=412)
    assert answers_of(object()) == EndpointAnswers(accepted=200, refused=401)
    assert "verify-secret-value-9" not in repr(handler(token="verify-secret-value-9"))


def message(topic: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "metadata": {"topic": topic, "schemaVersion": "1.0", "deprecated": False},
            "notification": {
                "notificationId": "n-1",
                "eventDate": "2026-03-04T20:00:00.000Z",
                "publishDate": "2026-03-04T20:00:01.000Z",
                "publishAttemptCount": 1,
                "data": data,
            },
        }
    ).encode()


def test_each_topic_maps_to_its_action() -> None:
    hook = handler()
    deletion = hook.map("MARKETPLACE_ACCOUNT_DELETION", java("message.json"))
    assert isinstance(deletion, EraseBuyer)
    assert set(deletion.buyer_refs) == {buyer_ref("ma8vp1jySJC"), buyer_ref("test_user")}
    assert "test_user" not in repr(deletion) and "ma8vp1jySJC" not in repr(deletion)
    confirmed = hook.map("ORDER_CONFIRMATION", message("ORDER_CONFIRMATION", {"orderId": "12-3"}))
    assert confirmed == FetchOrder("12-3")
    shipped = hook.map(
        "ITEM_MARKED_SHIPPED", message("ITEM_MARKED_SHIPPED", {"order": {"orderId": "12-4"}})
    )
    assert shipped == FetchOrder("12-4")
    assert isinstance(
        hook.map("AUTHORIZATION_REVOCATION", message("AUTHORIZATION_REVOCATION", {})),
        IgnoreDelivery,
    )
    assert isinstance(
        hook.map("MARKETPLACE_ACCOUNT_DELETION", message("MARKETPLACE_ACCOUNT_DELETION", {})),
        IgnoreDelivery,
    )
    with pytest.raises(MalformedDeliveryError, match="names no order"):
        hook.map("ORDER_CONFIRMATION", message("ORDER_CONFIRMATION", {}))
    with pytest.raises(MalformedDeliveryError):
        hook.map("ORDER_CONFIRMATION", b"not json")


async def test_the_registry_builds_the_handler_on_the_connectors_key_cache(tmp_path: Path) -> None:
    challenge = vectors()["endpoint_challenge"]
    env = {"ADMIN": "admin-token-value", "S": "secret-value-1", "R": "refresh-value-2"}
    env["V"] = challenge["verification_token"]
    root = DaemonConfig(
        root=tmp_path,
        database_url=None,
        admin_token_env="ADMIN",
        channels={
            "ebay-main": 'kind = "ebay"\nclient_id = "Example-App-PRD"\n'
            'client_secret = "env:S"\nrefresh_token = "env:R"\nverification_token = "env:V"\n'
            f'notification_endpoint_url = "{challenge["endpoint"]}"\n'
        },
    ).write()
    channel = load_config(root, env=env).channels["ebay-main"]
    ebay = FakeEbay()
    ebay.on("GET", KEY_PATH, vectors()["vectors"][0]["public_key_response"])
    connector: EbayConnector = connect(ebay)
    factory = webhook_handler_for("ebay")
    assert factory is not None
    hook = factory(channel, connector)
    assert isinstance(hook, EbayWebhookHandler)
    assert hook.answer_check({"challenge_code": challenge["challenge_code"]}) == {
        "challengeResponse": challenge["expected_challengeResponse"]
    }
    header = signed(vectors()["vectors"][0]["signature_header"])
    for _ in range(3):
        assert (await verified(hook, header, java("message.json"))).topic == (
            "MARKETPLACE_ACCOUNT_DELETION"
        )
    (fetch,) = ebay.calls("GET", KEY_PATH)  # once: cached for the hour
    assert fetch.headers["Authorization"].startswith("Bearer app-token-")
    assert connector.public_keys.fetches == 1
    await connector.aclose()
