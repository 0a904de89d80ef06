"""Login with Amazon on loopback: `POST /auth/o2/token` (CHANNELS.md, "Auth") and the access
tokens it issues, checked on every SP-API call (`x-amz-access-token`).

Grants: `refresh_token` (client id, client secret and the seller's refresh token) gives a seller
token; `client_credentials` with a `sellingpartnerapi::` scope gives a grantless token, which
opens no seller operation. Tokens last `ttl_s` (an hour, as Amazon's). LWA errors are OAuth
bodies: `{"error": "invalid_grant", "error_description": ...}`. The control API can revoke the
refresh token (the seller removed the app: every token dies, refreshes get invalid_grant) or
expire the access tokens (clients must refresh).
"""

from __future__ import annotations

import hmac
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

GRANTLESS_SCOPES = frozenset(
    {"sellingpartnerapi::notifications", "sellingpartnerapi::client_credential:rotation"}
)
TOKEN_TTL_S = 3600.0
INVALID_GRANT = (
    "The request has an invalid grant parameter : refresh_token. "
    "User may have revoked or didn't grant the permission."
)
TOKEN_DENIED = "The access token you provided is revoked, malformed or invalid."  # noqa: S105


@dataclass(frozen=True)
class Credentials:
    """What the sandbox's LWA accepts."""

    client_id: str
    client_secret: str
    refresh_token: str


class TokenIssuer:
    """The LWA side of one seller account: issues and checks access tokens."""

    def __init__(
        self, credentials: Credentials, clock: Callable[[], float], ttl_s: float = TOKEN_TTL_S
    ) -> None:
        self.credentials = credentials
        self._clock = clock
        self.ttl_s = ttl_s
        self.revoked = False
        self._tokens: dict[str, tuple[float, bool]] = {}  # token -> (expiry, is seller token)
        self.counts: Counter[str] = Counter()

    def issue(self, *, seller: bool) -> str:
        """A new access token."""
        token = f"Atza|sandbox-{secrets.token_urlsafe(24)}"
        self._tokens[token] = (self._clock() + self.ttl_s, seller)
        return token

    def denial(self, token: str | None) -> str | None:
        """Why a seller call with this token is refused; None when it is allowed."""
        if not token:
            return "Access to requested resource is denied: no x-amz-access-token."
        entry = self._tokens.get(token)
        if entry is None or not entry[1]:
            return TOKEN_DENIED
        if entry[0] <= self._clock():
            del self._tokens[token]
            return "The access token you provided has expired."
        return None

    def revoke(self) -> None:
        """The seller removed the app: the refresh token and every access token stop working."""
        self.revoked = True
        self._tokens.clear()

    def restore(self) -> None:
        """The seller authorised the app again (same refresh token)."""
        self.revoked = False

    def expire(self) -> None:
        """Every access token expires now."""
        self._tokens.clear()

    def grant(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        """The LWA answer to a token request: (status, body)."""
        grant_type = form.get("grant_type")
        if not grant_type:
            return _oauth(
                400, "invalid_request", "The request is missing a required parameter : grant_type"
            )
        if grant_type not in ("refresh_token", "client_credentials"):
            return _oauth(400, "unsupported_grant_type", f"Unsupported grant type: {grant_type}")
        expected = self.credentials
        if not (
            hmac.compare_digest(form.get("client_id", "").encode(), expected.client_id.encode())
            and hmac.compare_digest(
                form.get("client_secret", "").encode(), expected.client_secret.encode()
            )
        ):
            return _oauth(401, "invalid_client", "Client authentication failed")
        if grant_type == "client_credentials":
            scope = form.get("scope", "")
            if scope not in GRANTLESS_SCOPES:
                return _oauth(400, "invalid_scope", "An unknown scope was requested")
            body: dict[str, object] = {
                "access_token": self.issue(seller=False),
                "scope": scope,
                "token_type": "bearer",
                "expires_in": int(self.ttl_s),
            }
            return 200, body
        given = form.get("refresh_token")
        if not given:
            return _oauth(
                400,
                "invalid_request",
                "The request is missing a required parameter : refresh_token",
            )
        if self.revoked or not hmac.compare_digest(given.encode(), expected.refresh_token.encode()):
            return _oauth(400, "invalid_grant", INVALID_GRANT)
        body = {
            "access_token": self.issue(seller=True),
            "refresh_token": given,
            "token_type": "bearer",
            "expires_in": int(self.ttl_s),
        }
        return 200, body


def _oauth(status: int, error: str, description: str) -> tuple[int, dict[str, object]]:
    return status, {"error": error, "error_description": description}


async def token_endpoint(request: Request) -> Response:
    """`POST /auth/o2/token` (form-encoded, as LWA takes it)."""
    issuer: TokenIssuer = request.app.state.sandbox.issuer
    raw = await request.body()
    try:
        parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        parsed = {}
    form = {key: values[-1] for key, values in parsed.items()}
    status, body = issuer.grant(form)
    issuer.counts["issued" if status == 200 else "refused"] += 1
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def auth_routes() -> list[Route]:
    """The LWA route."""
    return [Route("/auth/o2/token", token_endpoint, methods=["POST"])]
