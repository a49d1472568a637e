"""Signing keys on disk (create, reload, rotate, retire) and the tokens they sign."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from ewsgate.portal.oauth.keys import SigningKeys
from ewsgate.portal.oauth.tokens import (
    TokenError,
    TokenIssuer,
    verify_access_token,
    verify_tunnel_ticket,
)

ISSUER = "https://portal.example"
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keys(tmp_path: Path, clock: FakeClock) -> SigningKeys:
    return SigningKeys.open(tmp_path, clock)


def _access(issuer: TokenIssuer, **over: object) -> str:
    args: dict[str, object] = dict(relay_id="1", user_id="7", email="t@example.com",
                                   session_id="sid1", session_expires_at=T0 + timedelta(minutes=30),
                                   ttl_seconds=600)
    args.update(over)
    return issuer.access_token(**args).token  # type: ignore[arg-type]


def test_first_use_generates_one_private_key_file(tmp_path: Path, keys: SigningKeys) -> None:
    assert not (tmp_path / "signing-keys").exists(), "opening the ring writes nothing"
    jwks = keys.jwks()
    files = list((tmp_path / "signing-keys").glob("*.json"))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "signing-keys").stat().st_mode) == 0o700
    assert len(jwks["keys"]) == 1
    public = jwks["keys"][0]
    assert public["kty"] == "EC" and public["crv"] == "P-256" and public["alg"] == "ES256"
    assert public["use"] == "sig" and public["kid"] == keys.active.kid
    assert "d" not in public, "the JWKS must not publish the private scalar"


def test_reopen_keeps_the_same_key(tmp_path: Path, keys: SigningKeys, clock: FakeClock) -> None:
    first = keys.active.kid
    again = SigningKeys.open(tmp_path, clock)
    assert again.active.kid == first
    assert again.active.kid == keys.active.kid


def test_rotation_keeps_old_key_published_until_retired(
    tmp_path: Path, keys: SigningKeys, clock: FakeClock
) -> None:
    issuer = TokenIssuer(keys, ISSUER, clock)
    old_kid = keys.active.kid
    old_token = _access(issuer)
    clock.now += timedelta(seconds=5)
    new = keys.rotate()
    assert keys.active.kid == new.kid != old_kid
    assert {k["kid"] for k in keys.jwks()["keys"]} == {old_kid, new.kid}
    # a second process sharing the directory sees the rotation without a restart
    other = SigningKeys.open(tmp_path, clock)
    assert other.active.kid == new.kid
    assert jwt.decode(_access(issuer), other.public_key_set()).header["kid"] == new.kid
    verify_access_token(old_token, other.public_key_set(), issuer=ISSUER, audience="1",
                        now=int(clock.now.timestamp()))
    keys.retire(old_kid)
    assert [k["kid"] for k in keys.jwks()["keys"]] == [new.kid]
    with pytest.raises(TokenError) as info:
        verify_access_token(old_token, keys.public_key_set(), issuer=ISSUER, audience="1",
                            now=int(clock.now.timestamp()))
    assert info.value.code == "bad_signature"


def test_active_key_cannot_be_retired(keys: SigningKeys) -> None:
    with pytest.raises(ValueError):
        keys.retire(keys.active.kid)


def test_corrupt_key_file_is_reported_clearly(tmp_path: Path, keys: SigningKeys,
                                              clock: FakeClock) -> None:
    keys.jwks()
    (tmp_path / "signing-keys" / "broken.json").write_text("{not json")
    with pytest.raises(RuntimeError, match="unreadable or malformed"):
        SigningKeys.open(tmp_path, clock).jwks()


def test_access_token_claims_and_header(keys: SigningKeys, clock: FakeClock) -> None:
    issuer = TokenIssuer(keys, ISSUER, clock)
    token = _access(issuer)
    claims = verify_access_token(token, keys.public_key_set(), issuer=ISSUER, audience="1",
                                 now=int(T0.timestamp()))
    assert claims["sub"] == "7" and claims["sid"] == "sid1" and claims["email"] == "t@example.com"
    assert claims["aud"] == "1" and claims["client_id"] == "1"
    assert claims["exp"] == int(T0.timestamp()) + 600
    header = jwt.decode(token, keys.public_key_set()).header
    assert header == {"alg": "ES256", "kid": keys.active.kid, "typ": "at+jwt"}


def test_access_token_never_outlives_the_session(keys: SigningKeys, clock: FakeClock) -> None:
    issuer = TokenIssuer(keys, ISSUER, clock)
    end = T0 + timedelta(seconds=90)
    issued = issuer.access_token(relay_id="1", user_id="7", email="e", session_id="s",
                                 session_expires_at=end, ttl_seconds=1800)
    assert issued.expires_at == end
    with pytest.raises(ValueError):
        issuer.access_token(relay_id="1", user_id="7", email="e", session_id="s",
                            session_expires_at=T0, ttl_seconds=1800)


def test_token_for_relay_x_is_refused_by_relay_y(keys: SigningKeys, clock: FakeClock) -> None:
    token = _access(TokenIssuer(keys, ISSUER, clock), relay_id="1")
    with pytest.raises(TokenError) as info:
        verify_access_token(token, keys.public_key_set(), issuer=ISSUER, audience="2",
                            now=int(T0.timestamp()))
    assert info.value.code == "wrong_audience"


def test_expired_token_is_refused(keys: SigningKeys, clock: FakeClock) -> None:
    token = _access(TokenIssuer(keys, ISSUER, clock), ttl_seconds=60)
    with pytest.raises(TokenError) as info:
        verify_access_token(token, keys.public_key_set(), issuer=ISSUER, audience="1",
                            now=int(T0.timestamp()) + 60)
    assert info.value.code == "expired"


def test_other_issuer_is_refused(keys: SigningKeys, clock: FakeClock) -> None:
    token = _access(TokenIssuer(keys, "https://other.example", clock))
    with pytest.raises(TokenError) as info:
        verify_access_token(token, keys.public_key_set(), issuer=ISSUER, audience="1",
                            now=int(T0.timestamp()))
    assert info.value.code == "wrong_issuer"


def test_token_signed_by_a_foreign_key_is_refused(keys: SigningKeys) -> None:
    foreign = ECKey.generate_key("P-256", private=True)
    forged = jwt.encode({"alg": "ES256", "kid": keys.active.kid, "typ": "at+jwt"},
                        {"iss": ISSUER, "aud": "1", "sub": "7", "sid": "s", "jti": "j",
                         "iat": 0, "exp": 2**40, "email": "e", "typ": "ewsgate-access-token"},
                        foreign, algorithms=["ES256"])
    with pytest.raises(TokenError) as info:
        verify_access_token(forged, keys.public_key_set(), issuer=ISSUER, audience="1", now=1)
    assert info.value.code == "bad_signature"


def test_alg_none_is_refused(keys: SigningKeys) -> None:
    import base64
    import json

    def b64(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    token = b64({"alg": "none", "typ": "at+jwt"}) + "." + b64(
        {"iss": ISSUER, "aud": "1", "exp": 2**40}) + "."
    with pytest.raises(TokenError):
        verify_access_token(token, keys.public_key_set(), issuer=ISSUER, audience="1", now=1)


def test_ticket_and_access_token_are_not_interchangeable(keys: SigningKeys,
                                                         clock: FakeClock) -> None:
    issuer = TokenIssuer(keys, ISSUER, clock)
    ticket = issuer.tunnel_ticket(
        relay_id="1", installation_id="5", session_id="sid1",
        expires_at=T0 + timedelta(minutes=30),
        device={"ip": "10.0.0.5", "hostname": "printer", "endpoints": [
            {"scheme": "http", "port": 80}]}).token
    now = int(T0.timestamp())
    claims = verify_tunnel_ticket(ticket, keys.public_key_set(), issuer=ISSUER, audience="1",
                                  now=now)
    assert claims["sub"] == "5" and claims["typ"] == "ewsgate-tunnel-ticket"
    assert claims["dev"]["endpoints"] == [{"scheme": "http", "port": 80}]
    assert claims["exp"] == now + 1800
    with pytest.raises(TokenError) as info:
        verify_access_token(ticket, keys.public_key_set(), issuer=ISSUER, audience="1", now=now)
    assert info.value.code == "wrong_type"
    with pytest.raises(TokenError):
        verify_tunnel_ticket(_access(issuer), keys.public_key_set(), issuer=ISSUER,
                             audience="1", now=now)


def test_jwks_round_trips_through_json(keys: SigningKeys) -> None:
    import json

    KeySet.import_key_set(json.loads(json.dumps(keys.jwks())))
