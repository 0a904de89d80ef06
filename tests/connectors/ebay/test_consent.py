"""The consent steps around auth.py: where the consent page is, the redirect's checks, and a
code the seller pastes."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import pytest

from connectors.ebay import const
from connectors.ebay.auth import consent_url
from connectors.ebay.consent import (
    ConsentRefusedError,
    check_consent_redirect,
    code_from_paste,
    consent_endpoint,
)

CODE = "v^1.1#i^1#f^0#I^3#r^1#p^3#t^Ul41XzE6MEJCQ0Q5QjY="
STATE = "nonce-abc"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (None, "https://auth.ebay.com/oauth2/authorize"),
        ("https://api.sandbox.ebay.com", "https://auth.sandbox.ebay.com/oauth2/authorize"),
        ("http://127.0.0.1:9003/", "http://127.0.0.1:9003/oauth2/authorize"),
    ],
)
def test_the_consent_page_follows_the_api_base_url(override: str | None, expected: str) -> None:
    assert consent_endpoint(override) == expected


def test_the_consent_url_sends_the_runame_not_an_address() -> None:
    url = consent_url(
        "client-1", "Seller-chsync-PRD-abc", state=STATE, base_url=consent_endpoint(None)
    )
    query = parse_qs(urlsplit(url).query)
    assert query["redirect_uri"] == ["Seller-chsync-PRD-abc"]
    assert query["state"] == [STATE]
    assert query["scope"] == [" ".join(const.USER_SCOPES)]


def test_a_redirect_for_this_run_gives_its_code() -> None:
    params = {"state": STATE, "code": CODE, "expires_in": "299"}
    assert check_consent_redirect(params, state=STATE) == CODE


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"state": STATE, "error": "access_denied"}, "did not grant access"),
        ({"state": "an-earlier-run", "code": CODE}, "state does not match"),
        ({"code": CODE}, "state does not match"),
        ({"state": STATE}, "no authorization code"),
    ],
)
def test_a_redirect_failing_a_check_is_refused_saying_which(
    params: dict[str, str], reason: str
) -> None:
    with pytest.raises(ConsentRefusedError, match=reason):
        check_consent_redirect(params, state=STATE)


@pytest.mark.parametrize(
    "pasted",
    [
        CODE,
        quote(CODE, safe=""),
        f"  https://auth2.ebay.com/oauth2/ThirdPartyAuthSucessFailure?isAuthSuccessful=true"
        f"&code={quote(CODE, safe='')}&expires_in=299  ",
    ],
)
def test_a_pasted_code_or_address_gives_the_code(pasted: str) -> None:
    assert code_from_paste(pasted) == CODE


@pytest.mark.parametrize(
    "pasted", ["", "   ", "https://auth2.ebay.com/done?isAuthSuccessful=false"]
)
def test_a_paste_without_a_code_is_refused(pasted: str) -> None:
    with pytest.raises(ConsentRefusedError):
        code_from_paste(pasted)
