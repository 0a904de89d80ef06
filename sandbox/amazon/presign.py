"""Presigned transfer URLs, as S3 signs those the Feeds and Reports APIs hand out: the document
id, an expiry time, the Content-Type (and, for downloads, the Content-Encoding) are signed with
the account's key, so a URL cannot be altered or used past its expiry. Transfers are not SP-API
calls: no token, no rate limit; a refusal is S3's XML error with HTTP 403.

    {base_url}{route}/{document_id}?X-Amz-Expires={epoch seconds}&X-Amz-Signature={hex}
        [&response-content-encoding=gzip]
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import timedelta

from starlette.responses import Response

from sandbox.amazon.model import Clock

ENCODING_PARAMETER = "response-content-encoding"
"""The signed query parameter asking the download to carry `Content-Encoding` (S3's name)."""


def s3_error(status: int, code: str, message: str) -> Response:
    """An S3 error answer."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(body, status_code=status, media_type="application/xml")


class Presigner:
    """Signs transfer URLs with one key and checks the URLs a transfer arrives on."""

    def __init__(self, clock: Clock, key: bytes) -> None:
        self.clock = clock
        self._key = key

    def sign(self, document_id: str, expires: int, content_type: str, encoding: str = "") -> str:
        """The signature of a transfer URL."""
        text = f"{document_id}\n{expires}\n{content_type}\n{encoding}".encode()
        return hmac.new(self._key, text, hashlib.sha256).hexdigest()

    def url(
        self,
        base_url: str,
        route: str,
        document_id: str,
        content_type: str,
        lifetime_s: float,
        *,
        encoding: str = "",
    ) -> str:
        """A URL to `{route}/{document_id}` valid for `lifetime_s` seconds."""
        expires = int((self.clock.now() + timedelta(seconds=lifetime_s)).timestamp())
        signature = self.sign(document_id, expires, content_type, encoding)
        url = f"{base_url}{route}/{document_id}?X-Amz-Expires={expires}&X-Amz-Signature={signature}"
        return f"{url}&{ENCODING_PARAMETER}={encoding}" if encoding else url

    def refusal(
        self,
        query: Mapping[str, str],
        document_id: str,
        content_type: str,
        *,
        mismatch_hint: str = "",
    ) -> Response | None:
        """Why a transfer to this URL is refused (None: it may go ahead). `content_type` is the
        one the signature must cover (an upload's own header, a download's stored type)."""
        expires_text = query.get("X-Amz-Expires", "")
        if not expires_text.isdigit():
            return s3_error(403, "AccessDenied", "Access Denied")
        wanted = self.sign(
            document_id, int(expires_text), content_type, query.get(ENCODING_PARAMETER, "")
        )
        if not hmac.compare_digest(query.get("X-Amz-Signature", ""), wanted):
            message = (
                "The request signature we calculated does not match the signature you provided."
            )
            return s3_error(403, "SignatureDoesNotMatch", f"{message} {mismatch_hint}".strip())
        if int(expires_text) < self.clock.now().timestamp():
            return s3_error(403, "AccessDenied", "Request has expired")
        return None
