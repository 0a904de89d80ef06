"""The seller's one-time consent, as `channel-sync ebay connect` walks it: where the consent page
is, the checks the page's redirect must pass, and reading a code the seller pastes.

auth.py builds the consent URL (`consent_url`) and trades the code for the refresh token
(`exchange_code`); this module adds what sits around them. eBay sends the browser to the
RuName's "auth accepted" URL with `code`, `state` and `expires_in` (or `error` when the seller
declines); the code lives about five minutes and works once.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from connectors.ebay import const

CallbackParams = Mapping[str, str | Sequence[str]]
"""A redirect's query, one value per key."""


class ConsentRefusedError(ValueError):
    """A redirect failed a check, or brought no code; the message says why and holds no secret."""


def consent_endpoint(api_base_url: str | None) -> str:
    """eBay's consent page, or the one beside an overridden API host: `api.X` -> `auth.X`
    (eBay's own sandbox), the same host otherwise (the loopback sandbox serves both)."""
    if api_base_url is None:
        return const.CONSENT_URL
    parts = urlsplit(api_base_url)
    host = parts.netloc
    if host.startswith("api."):
        host = "auth." + host.removeprefix("api.")
    path = parts.path.rstrip("/") + urlsplit(const.CONSENT_URL).path
    return urlunsplit((parts.scheme, host, path, "", ""))


def check_consent_redirect(params: CallbackParams, *, state: str) -> str:
    """The authorization code of a redirect meant for this connect run; ConsentRefusedError
    saying why not."""
    error = params.get("error")
    if isinstance(error, str) and error:
        raise ConsentRefusedError(f"eBay reports {error!r}: the seller did not grant access")
    given_state = params.get("state")
    if not isinstance(given_state, str) or not hmac.compare_digest(
        given_state.encode(), state.encode()
    ):
        raise ConsentRefusedError(
            "its state does not match this connect run: a tab left from an earlier run, or a "
            "link someone else made; open the consent URL this run printed"
        )
    code = params.get("code")
    if not isinstance(code, str) or not code:
        raise ConsentRefusedError("it carries no authorization code")
    return code


def code_from_paste(text: str) -> str:
    """The code from what the seller pasted: the code itself (as eBay shows it in the address
    bar, percent-encoded, or decoded), or the whole address of the page eBay sent them to."""
    text = text.strip()
    if "://" in text:
        codes = parse_qs(urlsplit(text).query).get("code")
        if not codes or not codes[0]:
            raise ConsentRefusedError("that address has no code= in it")
        return codes[0]
    if not text:
        raise ConsentRefusedError("the code is empty")
    # eBay codes hold '#', '^' and '=': in an address bar they appear percent-encoded.
    return unquote(text) if "%" in text else text


__all__ = [
    "CallbackParams",
    "ConsentRefusedError",
    "check_consent_redirect",
    "code_from_paste",
    "consent_endpoint",
]
