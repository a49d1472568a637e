"""PKCE rules at both ends: S256 only, 43-128 unreserved characters, constant-time match."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ewsgate.portal.oauth.errors import OAuthError
from ewsgate.portal.oauth.pkce import check_challenge, check_verifier, s256_challenge

VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"


def test_s256_matches_rfc7636_appendix_b() -> None:
    assert s256_challenge(VERIFIER) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_well_formed_s256_challenge_is_accepted() -> None:
    challenge = s256_challenge(VERIFIER)
    assert check_challenge(challenge, "S256") == challenge


@pytest.mark.parametrize("challenge", [None, ""])
def test_missing_challenge_is_refused(challenge: str | None) -> None:
    with pytest.raises(OAuthError) as info:
        check_challenge(challenge, "S256")
    assert info.value.error == "invalid_request"
    assert "code_challenge is required" in info.value.description


@pytest.mark.parametrize("method", ["plain", None, "", "s256", "S512"])
def test_plain_or_missing_method_is_refused(method: str | None) -> None:
    """A missing method is not defaulted to plain (OAuth 2.1: S256 is mandatory)."""
    with pytest.raises(OAuthError) as info:
        check_challenge(s256_challenge(VERIFIER), method)
    assert info.value.error == "invalid_request"
    assert "only S256" in info.value.description


@pytest.mark.parametrize(
    "challenge",
    [
        "a" * 42,  # one short
        "a" * 129,  # one long
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c=",  # padding is not unreserved
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM",  # standard base64 alphabet
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw cM",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw\ncM",
        "é" * 43,
    ],
)
def test_malformed_challenge_is_refused(challenge: str) -> None:
    with pytest.raises(OAuthError) as info:
        check_challenge(challenge, "S256")
    assert "malformed" in info.value.description


def test_boundary_lengths_are_accepted() -> None:
    assert check_challenge("a" * 43, "S256")
    assert check_challenge("~._-" * 32, "S256")


def test_matching_verifier_passes() -> None:
    check_verifier(VERIFIER, s256_challenge(VERIFIER))


def test_wrong_verifier_is_refused() -> None:
    with pytest.raises(OAuthError) as info:
        check_verifier("x" * 43, s256_challenge(VERIFIER))
    assert info.value.error == "invalid_grant"


def test_verifier_without_stored_challenge_is_refused() -> None:
    """RFC 9700 §4.8: a verifier for a code issued without a challenge is a downgrade."""
    for stored in (None, ""):
        with pytest.raises(OAuthError) as info:
            check_verifier(VERIFIER, stored)
        assert info.value.error == "invalid_grant"


def test_missing_verifier_is_refused() -> None:
    with pytest.raises(OAuthError) as info:
        check_verifier(None, s256_challenge(VERIFIER))
    assert info.value.error == "invalid_request"


def test_plain_verifier_equal_to_challenge_is_refused() -> None:
    """Sending the challenge itself as the verifier (a plain-method downgrade) fails."""
    challenge = s256_challenge(VERIFIER)
    with pytest.raises(OAuthError):
        check_verifier(challenge, challenge)


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~",
               min_size=43, max_size=128))
def test_any_valid_verifier_round_trips(verifier: str) -> None:
    check_verifier(verifier, s256_challenge(verifier))
    digest = hashlib.sha256(verifier.encode()).digest()
    assert s256_challenge(verifier) == base64.urlsafe_b64encode(digest).decode().rstrip("=")


@given(st.text(max_size=200))
def test_check_challenge_accepts_exactly_the_rfc_syntax(text: str) -> None:
    well_formed = re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", text) is not None
    try:
        check_challenge(text, "S256")
    except OAuthError:
        assert not well_formed
    else:
        assert well_formed
