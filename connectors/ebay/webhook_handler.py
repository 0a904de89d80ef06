"""eBay's notification handler for the daemon: webhooks.py's checks behind the kind-agnostic
webhook protocol (connectors/webhook_handler.py).

- `GET /webhooks/NAME?challenge_code=X` is eBay's endpoint check: `answer_check` gives
  `{"challengeResponse": ...}` from the channel's verification token and endpoint URL.
- `POST`: `prepare` fetches the public key of the header's kid (the connector's cache: one
  getPublicKey an hour per kid, with the application token), then `verify` checks the signature
  over the compact message with no I/O. A refusal answers 412 and stores nothing; a stored or
  repeated notification answers 204 (eBay's Notification API expects both). The inbox key is
  the notificationId, so eBay's redeliveries are stored once.
- Topics: MARKETPLACE_ACCOUNT_DELETION erases that user's personal data (`EraseBuyer`);
  ORDER_CONFIRMATION and ITEM_MARKED_SHIPPED name an order to read again (`FetchOrder`: the
  notification is a hint, polling stays on); anything else is kept and not acted on
  (AUTHORIZATION_REVOCATION is application-wide and may concern another user of the app).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec

from connectors.ebay import const
from connectors.ebay.webhooks import (
    NotificationVerificationError,
    PublicKeyCache,
    SignatureHeader,
    account_deletion,
    challenge_response,
    is_signed,
    order_hint,
    parse_signature_header,
    read_notification,
)
from connectors.webhook_handler import (
    EndpointAnswers,
    EndpointCheckError,
    EraseBuyer,
    FetchOrder,
    IgnoreDelivery,
    MalformedDeliveryError,
    VerifiedDelivery,
    WebhookAction,
    WebhookRefusedError,
)

if TYPE_CHECKING:
    from config.channels import EbayChannel
    from connectors.ebay.connector import EbayConnector

CHALLENGE_PARAM = "challenge_code"
_MAX_CHALLENGE = 512


class EbayWebhookHandler:
    """Verify and map one eBay application's notifications for one channel."""

    answers = EndpointAnswers(accepted=204, refused=412)

    def __init__(
        self,
        keys: PublicKeyCache,
        *,
        verification_token: str | None,
        endpoint_url: str | None,
    ) -> None:
        self._keys = keys
        self._token = verification_token
        self._endpoint_url = endpoint_url
        # Keys `prepare` fetched, by kid, for the `verify` that follows it (no await between
        # the two in the receiver, so another request cannot change the entry in between).
        self._ready: dict[str, ec.EllipticCurvePublicKey] = {}

    def __repr__(self) -> str:
        return f"EbayWebhookHandler(endpoint_url={self._endpoint_url!r}, token='**********')"

    # GET: the endpoint check ----------------------------------------------------------------

    def answer_check(self, query: Mapping[str, str]) -> Mapping[str, str] | None:
        """`{"challengeResponse": ...}` for eBay's `challenge_code`; None without one."""
        code = query.get(CHALLENGE_PARAM)
        if code is None:
            return None
        if not code or len(code) > _MAX_CHALLENGE:
            raise WebhookRefusedError("challenge_code is empty or too long")
        if not self._token or not self._endpoint_url:
            raise EndpointCheckError(
                "set verification_token and notification_endpoint_url (the URL registered "
                "with eBay) in the channel file to answer eBay's endpoint check"
            )
        return {"challengeResponse": challenge_response(code, self._token, self._endpoint_url)}

    # POST: verify ----------------------------------------------------------------------------

    async def prepare(self, headers: Mapping[str, str], body: bytes) -> None:
        """Fetch the signing key named by X-EBAY-SIGNATURE (cached an hour); refused when the
        header is unusable or eBay knows no key by its kid."""
        header = self._header(headers)
        try:
            key = await self._keys.key(header.kid)
        except NotificationVerificationError as err:
            raise WebhookRefusedError(str(err)) from err
        if key is None:
            self._ready.pop(header.kid, None)
            raise WebhookRefusedError("eBay knows no public key by the header's kid")
        self._ready[header.kid] = key

    def verify(self, headers: Mapping[str, str], body: bytes) -> VerifiedDelivery:
        """The signature over the compact message, with the key `prepare` fetched."""
        header = self._header(headers)
        key = self._ready.get(header.kid)
        if key is None:
            raise WebhookRefusedError("the signing key was not fetched before verifying")
        try:
            message = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise WebhookRefusedError("the body is not JSON") from err
        except RecursionError as err:  # `[[[...]]]` thousands deep: no notification of eBay's
            raise WebhookRefusedError("the body is nested too deeply") from err
        try:
            signed = is_signed(key, header, message)  # re-serialises: as deep as parsing
        except RecursionError as err:
            raise WebhookRefusedError("the body is nested too deeply") from err
        if not signed:
            raise WebhookRefusedError("the signature does not match the message")
        try:
            notification = read_notification(message)
        except NotificationVerificationError as err:
            raise WebhookRefusedError(str(err)) from err
        return VerifiedDelivery(notification.delivery_id, notification.topic)

    @staticmethod
    def _header(headers: Mapping[str, str]) -> SignatureHeader:
        lowered = {name.lower(): value for name, value in headers.items()}
        try:
            return parse_signature_header(lowered.get(const.SIGNATURE_HEADER))
        except NotificationVerificationError as err:
            raise WebhookRefusedError(str(err)) from err

    # After storing: what the notification asks -----------------------------------------------

    def map(self, topic: str, body: bytes) -> WebhookAction:
        """The action a stored notification asks for."""
        try:
            notification = read_notification(json.loads(body))
        except (ValueError, UnicodeDecodeError) as err:
            raise MalformedDeliveryError("the stored notification is not readable") from err
        deletion = account_deletion(notification)
        if deletion is not None:
            if not deletion.buyer_refs:
                return IgnoreDelivery("the account deletion names no user")
            return EraseBuyer(tuple(sorted(deletion.buyer_refs)))
        if notification.topic in const.ORDER_HINT_TOPICS:
            order_id = order_hint(notification)
            if order_id is None:
                raise MalformedDeliveryError(f"{notification.topic} names no order")
            return FetchOrder(order_id)
        return IgnoreDelivery(f"topic {notification.topic} is not acted on")


def build_webhook_handler(channel: EbayChannel, connector: EbayConnector) -> EbayWebhookHandler:
    """The handler of a validated `kind = "ebay"` channel file, sharing the connector's key
    cache (and so its application token and quota)."""
    endpoint = channel.notification_endpoint_url
    return EbayWebhookHandler(
        connector.public_keys,
        verification_token=channel.verification_token.reveal(),
        endpoint_url=str(endpoint) if endpoint else None,
    )
