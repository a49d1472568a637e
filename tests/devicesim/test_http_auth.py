"""HTTP Basic and Digest, server side: the RFC 7616 worked examples, nonce tracking, staleness."""

from __future__ import annotations

import base64
import hashlib

from hypothesis import given
from hypothesis import strategies as st

from ewsgate.devicesim.http_auth import HttpAuthenticator, parse_digest_params

# RFC 7616 section 3.9.1
RFC_USER, RFC_PASSWORD, RFC_REALM = "Mufasa", "Circle of Life", "http-auth@example.org"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_URI = "/dir/index.html"
RFC_RESPONSES = {"MD5": "8ca523f5e9506fed4657c9700eebdbec",
                 "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


def rfc_authenticator(clock: FakeClock) -> HttpAuthenticator:
    auth = HttpAuthenticator(RFC_REALM, {RFC_USER: RFC_PASSWORD}, clock)
    auth._nonces[RFC_NONCE] = [clock.monotonic(), 0]
    return auth


def digest_header(algorithm: str, response: str, nc: str = "00000001",
                  nonce: str = RFC_NONCE, uri: str = RFC_URI) -> str:
    return (f'Digest username="{RFC_USER}", realm="{RFC_REALM}", uri="{uri}", '
            f'algorithm={algorithm}, nonce="{nonce}", nc={nc}, cnonce="{RFC_CNONCE}", '
            f'qop=auth, response="{response}", '
            'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')


def compute(algorithm: str, nonce: str, nc: str, uri: str = RFC_URI, method: str = "GET") -> str:
    h = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[algorithm]

    def hx(text: str) -> str:
        return h(text.encode()).hexdigest()

    ha1 = hx(f"{RFC_USER}:{RFC_REALM}:{RFC_PASSWORD}")
    return hx(f"{ha1}:{nonce}:{nc}:{RFC_CNONCE}:auth:{hx(f'{method}:{uri}')}")


def test_rfc7616_examples_are_accepted_for_md5_and_sha256() -> None:
    for algorithm, response in RFC_RESPONSES.items():
        auth = rfc_authenticator(FakeClock())
        result = auth.check("GET", RFC_URI, digest_header(algorithm, response))
        assert result.user == RFC_USER, result.reason
        assert result.scheme == "Digest"


def test_wrong_response_is_refused() -> None:
    auth = rfc_authenticator(FakeClock())
    result = auth.check("GET", RFC_URI, digest_header("SHA-256", "0" * 64))
    assert result.user is None and not result.stale


def test_replayed_nonce_count_is_refused_and_a_higher_one_accepted() -> None:
    auth = rfc_authenticator(FakeClock())
    assert auth.check("GET", RFC_URI, digest_header("MD5", RFC_RESPONSES["MD5"])).user
    replay = auth.check("GET", RFC_URI, digest_header("MD5", RFC_RESPONSES["MD5"]))
    assert replay.user is None and replay.reason == "nonce count replayed"
    nc2 = compute("MD5", RFC_NONCE, "00000002")
    assert auth.check("GET", RFC_URI, digest_header("MD5", nc2, nc="00000002")).user


def test_expired_nonce_is_stale_and_the_new_challenge_says_so() -> None:
    clock = FakeClock()
    auth = rfc_authenticator(clock)
    clock.now += auth.nonce_lifetime + 1
    result = auth.check("GET", RFC_URI, digest_header("SHA-256", RFC_RESPONSES["SHA-256"]))
    assert result.user is None and result.stale
    challenges = auth.challenges(stale=result.stale)
    assert all("stale=true" in value for _, value in challenges if value.startswith("Digest"))


def test_unknown_nonce_is_stale_not_a_wrong_password() -> None:
    auth = HttpAuthenticator(RFC_REALM, {RFC_USER: RFC_PASSWORD}, FakeClock())
    result = auth.check("GET", RFC_URI, digest_header("MD5", RFC_RESPONSES["MD5"]))
    assert result.stale


def test_uri_must_match_the_request_target() -> None:
    auth = rfc_authenticator(FakeClock())
    result = auth.check("GET", "/other", digest_header("MD5", RFC_RESPONSES["MD5"]))
    assert result.user is None


def test_challenges_offer_sha256_then_md5_then_basic() -> None:
    auth = HttpAuthenticator("printer", {"admin": "admin"}, FakeClock())
    values = [value for _, value in auth.challenges()]
    assert "algorithm=SHA-256" in values[0] and "algorithm=MD5" in values[1]
    assert values[2].startswith('Basic realm="printer"')
    params = parse_digest_params(values[0].removeprefix("Digest "))
    assert params["qop"] == "auth" and params["realm"] == "printer" and len(params["nonce"]) == 32


def test_a_fresh_challenge_nonce_is_accepted_end_to_end() -> None:
    clock = FakeClock()
    auth = HttpAuthenticator(RFC_REALM, {RFC_USER: RFC_PASSWORD}, clock)
    nonce = parse_digest_params(auth.challenges()[0][1].removeprefix("Digest "))["nonce"]
    header = digest_header("SHA-256", compute("SHA-256", nonce, "00000001", "/a?b=1", "POST"),
                           nonce=nonce, uri="/a?b=1")
    assert auth.check("POST", "/a?b=1", header).user == RFC_USER


def test_basic_good_and_bad() -> None:
    auth = HttpAuthenticator("r", {"admin": "admin"}, FakeClock())
    good = "Basic " + base64.b64encode(b"admin:admin").decode()
    bad = "Basic " + base64.b64encode(b"admin:nope").decode()
    assert auth.check("GET", "/", good).user == "admin"
    assert auth.check("GET", "/", bad).user is None
    assert auth.check("GET", "/", "Basic !!!").user is None
    assert auth.check("GET", "/", None).user is None


def test_basic_only_authenticator_refuses_digest() -> None:
    auth = HttpAuthenticator(RFC_REALM, {RFC_USER: RFC_PASSWORD}, FakeClock(), schemes=("Basic",))
    assert auth.check("GET", RFC_URI, digest_header("MD5", RFC_RESPONSES["MD5"])).user is None


def test_parse_digest_params_handles_quoted_commas_and_escapes() -> None:
    params = parse_digest_params('realm="a, b", nonce=xyz, opaque="q\\"r", stale=true')
    assert params == {"realm": "a, b", "nonce": "xyz", "opaque": 'q"r', "stale": "true"}


# ---- properties --------------------------------------------------------------------------------

_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
_values = st.text(alphabet=st.characters(codec="latin-1", exclude_characters="\r\n"),
                  max_size=40)


@given(st.dictionaries(_names, _values, max_size=8))
def test_parse_digest_params_round_trips_quoted_values(params: dict[str, str]) -> None:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    text = ", ".join(f"{name}={quoted(value)}" for name, value in params.items())
    assert parse_digest_params(text) == params


@given(st.text(max_size=300))
def test_any_authorization_header_is_answered_without_raising(header: str) -> None:
    auth = HttpAuthenticator(RFC_REALM, {RFC_USER: RFC_PASSWORD}, FakeClock())
    result = auth.check("GET", RFC_URI, header)
    assert result.user is None
    assert auth.check("GET", RFC_URI, "Digest " + header).user is None
