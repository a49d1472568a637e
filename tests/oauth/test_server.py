"""The authorization server's rules, each with the request that must be refused.

Driven through :class:`AuthorizationServer` on a real database; HTTP details (headers, login
redirect, content types) are in test_routes.py.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import select

from ewsgate.portal.oauth.client_auth import basic_auth_header
from ewsgate.portal.oauth.models import AuthorizationCode
from ewsgate.portal.oauth.pkce import s256_challenge
from ewsgate.portal.oauth.server import (
    AuthorizeErrorPage,
    AuthorizeLogin,
    AuthorizeRedirect,
    Principal,
)
from ewsgate.portal.oauth.tokens import TokenError, verify_access_token
from ewsgate.portal.store.models import RemoteSession
from sessions.rt_world import ISSUER, RtWorld, settle

pytestmark = pytest.mark.db

VERIFIER = "v" * 20 + "erifier-0123456789_abcdefghijklmnop~."
CHALLENGE = s256_challenge(VERIFIER)


async def _session(rt: RtWorld, who: str = "tech") -> RemoteSession:
    view = await rt.sessions.create(await rt.actor(who), rt.device["on"])
    await settle(rt)
    async with rt.db.transaction() as s:
        row = await s.get(RemoteSession, view.session_id)
        assert row is not None
        return row


def _params(row: RemoteSession, **over: str | None) -> list[tuple[str, str]]:
    base: dict[str, str | None] = {
        "response_type": "code", "client_id": str(row.relay_id),
        "redirect_uri": row.redirect_uri, "state": "st-123",
        "code_challenge": CHALLENGE, "code_challenge_method": "S256"}
    base.update(over)
    return [(k, v) for k, v in base.items() if v is not None]


def _principal(rt: RtWorld, who: str = "tech") -> Principal:
    return Principal(user_id=rt.users[who], email=rt.emails[who])


async def _authorize(rt: RtWorld, row: RemoteSession, who: str = "tech", **over: str | None):
    params = _params(row, **over)
    return await rt.oauth.authorize(params, urlencode(params), _principal(rt, who))


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def _code(rt: RtWorld, row: RemoteSession) -> str:
    outcome = await _authorize(rt, row)
    assert isinstance(outcome, AuthorizeRedirect), outcome
    query = _query(outcome.location)
    assert query["state"] == "st-123" and query["iss"] == ISSUER
    return query["code"]


def _relay_name(rt: RtWorld, relay_id: int) -> str:
    return next(name for name, rid in rt.relays.items() if rid == relay_id)


async def _redeem(rt: RtWorld, row: RemoteSession, code: str, *, relay: str | None = None,
                  secret: str | None = None, **over: str | None):
    relay = relay or _relay_name(rt, row.relay_id)
    form: dict[str, str | None] = {"grant_type": "authorization_code", "code": code,
                                   "redirect_uri": row.redirect_uri, "code_verifier": VERIFIER}
    form.update(over)
    auth = basic_auth_header(str(rt.relays[relay]), secret or rt.relay_secrets[relay])
    return await rt.oauth.token([(k, v) for k, v in form.items() if v is not None], auth)


# -- the happy path --------------------------------------------------------------------------


async def test_code_flow_issues_an_audience_bound_token(rt: RtWorld) -> None:
    row = await _session(rt)
    code = await _code(rt, row)
    reply = await _redeem(rt, row, code)
    assert reply.status == 200, reply.body
    assert reply.headers["Cache-Control"] == "no-store"
    assert set(reply.body) == {"access_token", "token_type", "expires_in"}, "no refresh token"
    assert reply.body["token_type"] == "Bearer"
    claims = verify_access_token(str(reply.body["access_token"]), rt.keys.public_key_set(),
                                 issuer=ISSUER, audience=str(row.relay_id),
                                 now=int(rt.clock.now.timestamp()))
    assert claims["sub"] == str(rt.users["tech"]) and claims["email"] == "tech@example.com"
    assert claims["sid"] == row.id
    assert claims["exp"] <= int(row.expires_at.timestamp())


async def test_token_for_relay_x_is_not_accepted_by_relay_y(rt: RtWorld) -> None:
    row = await _session(rt)
    reply = await _redeem(rt, row, await _code(rt, row))
    other = next(rid for rid in rt.relays.values() if rid != row.relay_id)
    with pytest.raises(TokenError) as info:
        verify_access_token(str(reply.body["access_token"]), rt.keys.public_key_set(),
                            issuer=ISSUER, audience=str(other),
                            now=int(rt.clock.now.timestamp()))
    assert info.value.code == "wrong_audience"


async def test_token_expiry_is_capped_by_the_session(rt: RtWorld) -> None:
    row = await _session(rt)
    code = await _code(rt, row)
    rt.clock.advance(29 * 60)
    reply = await _redeem(rt, row, code, code_verifier=VERIFIER)
    # the code expired long ago: a fresh one is needed, and its token ends with the session
    assert reply.status == 400
    code = await _code(rt, row)
    reply = await _redeem(rt, row, code)
    assert reply.status == 200
    assert reply.body["expires_in"] == 60


# -- PKCE -----------------------------------------------------------------------------------


@pytest.mark.parametrize("over", [
    {"code_challenge": None},
    {"code_challenge_method": "plain", "code_challenge": VERIFIER},
    {"code_challenge_method": None},
    {"code_challenge": "short"},
    {"code_challenge": CHALLENGE + "="},
    {"code_challenge": "a" * 129},
])
async def test_bad_pkce_is_refused_and_no_code_is_issued(rt: RtWorld, over: dict) -> None:
    row = await _session(rt)
    outcome = await _authorize(rt, row, **over)
    assert isinstance(outcome, AuthorizeRedirect)
    query = _query(outcome.location)
    assert query["error"] == "invalid_request" and "code" not in query
    assert query["state"] == "st-123"
    assert outcome.location.startswith(row.redirect_uri + "?")
    async with rt.db.transaction() as s:
        assert (await s.scalars(select(AuthorizationCode))).all() == []


async def test_wrong_verifier_is_refused(rt: RtWorld) -> None:
    row = await _session(rt)
    reply = await _redeem(rt, row, await _code(rt, row), code_verifier="w" * 43)
    assert reply.status == 400 and reply.body["error"] == "invalid_grant"


async def test_missing_verifier_is_refused(rt: RtWorld) -> None:
    row = await _session(rt)
    reply = await _redeem(rt, row, await _code(rt, row), code_verifier=None)
    assert reply.status == 400 and "access_token" not in reply.body


async def test_verifier_for_a_code_without_challenge_is_refused(rt: RtWorld) -> None:
    """RFC 9700 §4.8 downgrade: even if a code row lacked a challenge, no token comes out."""
    row = await _session(rt)
    code = await _code(rt, row)
    async with rt.db.transaction() as s:
        stored = (await s.scalars(select(AuthorizationCode))).one()
        stored.code_challenge = ""
    reply = await _redeem(rt, row, code)
    assert reply.status == 400 and reply.body["error"] == "invalid_grant"
    assert "without a PKCE challenge" in str(reply.body["error_description"])


# -- redirect URIs and clients ----------------------------------------------------------------


@pytest.mark.parametrize("mutate", [
    lambda uri: uri.replace("callback", "callbacK"),  # one character off
    lambda uri: uri + "/",  # extra slash
    lambda uri: uri.replace(":8443", ":8444"),  # different port
    lambda uri: uri.replace(":8443", ""),
    lambda uri: uri.replace("https://", "http://"),
    lambda uri: uri + "?next=https://evil.example",
    lambda uri: "https://evil.example/.ewsgate/callback",
])
async def test_redirect_uri_mismatch_shows_an_error_page_never_redirects(rt: RtWorld,
                                                                          mutate) -> None:
    row = await _session(rt)
    assert row.relay_id == rt.relays["relay-x"], "relay-x has port 8443"
    outcome = await _authorize(rt, row, redirect_uri=mutate(row.redirect_uri))
    assert isinstance(outcome, AuthorizeErrorPage)
    assert outcome.status == 400 and "redirect_uri" in outcome.message


async def test_redirect_uri_mismatch_at_the_token_endpoint(rt: RtWorld) -> None:
    row = await _session(rt)
    reply = await _redeem(rt, row, await _code(rt, row), redirect_uri=row.redirect_uri + "/")
    assert reply.status == 400 and reply.body["error"] == "invalid_grant"


@pytest.mark.parametrize("client_id", ["999", "", "abc", None])
async def test_unknown_client_shows_an_error_page(rt: RtWorld, client_id: str | None) -> None:
    row = await _session(rt)
    outcome = await _authorize(rt, row, client_id=client_id)
    assert isinstance(outcome, AuthorizeErrorPage)


async def test_session_of_another_relay_is_not_this_clients(rt: RtWorld) -> None:
    row = await _session(rt)
    other = next(rid for rid in rt.relays.values() if rid != row.relay_id)
    outcome = await _authorize(rt, row, client_id=str(other))
    assert isinstance(outcome, AuthorizeErrorPage)


async def test_wrong_client_secret_is_refused(rt: RtWorld) -> None:
    row = await _session(rt)
    reply = await _redeem(rt, row, await _code(rt, row), secret="ewsr_wrong")
    assert reply.status == 401 and reply.body["error"] == "invalid_client"
    assert reply.headers["WWW-Authenticate"].startswith("Basic")


async def test_missing_or_malformed_client_authentication_is_refused(rt: RtWorld) -> None:
    row = await _session(rt)
    code = await _code(rt, row)
    form = [("grant_type", "authorization_code"), ("code", code),
            ("redirect_uri", row.redirect_uri), ("code_verifier", VERIFIER)]
    for header in (None, "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"x").decode()):
        reply = await rt.oauth.token(form, header)
        assert reply.status == 401 and reply.body["error"] == "invalid_client", header


async def test_client_secret_in_the_body_is_refused(rt: RtWorld) -> None:
    row = await _session(rt)
    code = await _code(rt, row)
    relay = _relay_name(rt, row.relay_id)
    reply = await rt.oauth.token(
        [("grant_type", "authorization_code"), ("code", code), ("client_id", str(row.relay_id)),
         ("client_secret", rt.relay_secrets[relay]), ("redirect_uri", row.redirect_uri),
         ("code_verifier", VERIFIER)], None)
    assert reply.status == 401


async def test_code_issued_to_relay_x_cannot_be_redeemed_by_relay_y(rt: RtWorld) -> None:
    row = await _session(rt)
    other = next(name for name, rid in rt.relays.items() if rid != row.relay_id)
    reply = await _redeem(rt, row, await _code(rt, row), relay=other)
    assert reply.status == 400 and reply.body["error"] == "invalid_grant"


# -- single use, expiry, revocation -----------------------------------------------------------


async def test_reused_code_is_refused_and_its_token_revoked(rt: RtWorld) -> None:
    row = await _session(rt)
    code = await _code(rt, row)
    first = await _redeem(rt, row, code)
    assert first.status == 200
    second = await _redeem(rt, row, code)
    assert second.status == 400 and second.body["error"] == "invalid_grant"
    assert "access_token" not in second.body
    claims = verify_access_token(str(first.body["access_token"]), rt.keys.public_key_set(),
                                 issuer=ISSUER, audience=str(row.relay_id),
                                 now=int(rt.clock.now.timestamp()))
    async with rt.db.transaction() as s:
        revoked = await rt.oauth.revoked_token_ids(s, row.id)
        ended = await s.get(RemoteSession, row.id)
    assert revoked == [claims["jti"]]
    assert ended is not None and ended.status == "ended" and "used twice" in (ended.reason or "")
    # the sweeper finishes the job and tells the agent
    await rt.sessions.sweep()
    await settle(rt)
    assert "CloseSession" in rt.hub.kinds()


async def test_unknown_code_is_refused(rt: RtWorld) -> None:
    row = await _session(rt)
    reply = await _redeem(rt, row, "not-a-code")
    assert reply.status == 400 and reply.body["error"] == "invalid_grant"


async def test_expired_code_is_refused(rt: RtWorld) -> None:
    row = await _session(rt)
    code = await _code(rt, row)
    rt.clock.advance(60)
    reply = await _redeem(rt, row, code)
    assert reply.status == 400 and "expired" in str(reply.body["error_description"])


async def test_code_just_inside_its_lifetime_works(rt: RtWorld) -> None:
    row = await _session(rt)
    code = await _code(rt, row)
    rt.clock.advance(59)
    assert (await _redeem(rt, row, code)).status == 200


async def test_codes_are_stored_only_as_hashes(rt: RtWorld) -> None:
    row = await _session(rt)
    code = await _code(rt, row)
    async with rt.db.transaction() as s:
        stored = (await s.scalars(select(AuthorizationCode))).one()
    assert code not in stored.code_hash and len(stored.code_hash) == 64
    assert stored.expires_at - stored.created_at == timedelta(seconds=60)


# -- the user and the session ---------------------------------------------------------------


async def test_another_user_cannot_authorise_someone_elses_session(rt: RtWorld) -> None:
    row = await _session(rt, "tech")
    outcome = await _authorize(rt, row, who="tech2")
    assert isinstance(outcome, AuthorizeRedirect)
    query = _query(outcome.location)
    assert query["error"] == "access_denied" and "code" not in query
    assert "another user" in query["error_description"]


async def test_an_administrator_cannot_authorise_a_technicians_session(rt: RtWorld) -> None:
    row = await _session(rt, "tech")
    outcome = await _authorize(rt, row, who="admin")
    assert isinstance(outcome, AuthorizeRedirect) and "code" not in _query(outcome.location)


async def test_ended_session_cannot_be_authorised(rt: RtWorld) -> None:
    row = await _session(rt)
    await rt.sessions.end(await rt.actor("tech"), row.id)
    outcome = await _authorize(rt, row)
    assert isinstance(outcome, AuthorizeRedirect)
    assert _query(outcome.location)["error"] == "access_denied"


async def test_expired_session_cannot_be_authorised(rt: RtWorld) -> None:
    row = await _session(rt)
    rt.clock.advance(30 * 60)
    outcome = await _authorize(rt, row)
    assert isinstance(outcome, AuthorizeRedirect)
    assert _query(outcome.location)["error"] == "access_denied"


async def test_session_ended_between_code_and_token_gets_no_token(rt: RtWorld) -> None:
    row = await _session(rt)
    code = await _code(rt, row)
    await rt.sessions.end(await rt.actor("tech"), row.id)
    reply = await _redeem(rt, row, code)
    assert reply.status == 400 and reply.body["error"] == "invalid_grant"


async def test_missing_state_is_refused_with_an_error_page(rt: RtWorld) -> None:
    row = await _session(rt)
    outcome = await _authorize(rt, row, state=None)
    assert isinstance(outcome, AuthorizeErrorPage) and "state" in outcome.message


async def test_anonymous_browser_is_sent_to_login_and_back(rt: RtWorld) -> None:
    row = await _session(rt)
    params = _params(row)
    outcome = await rt.oauth.authorize(params, urlencode(params), None)
    assert isinstance(outcome, AuthorizeLogin)
    assert outcome.next_path == "/oauth/authorize?" + urlencode(params)


async def test_unknown_redirect_uri_is_refused_before_login(rt: RtWorld) -> None:
    """An open-redirect probe gets an error page even without a login."""
    row = await _session(rt)
    params = _params(row, redirect_uri="https://evil.example/")
    outcome = await rt.oauth.authorize(params, urlencode(params), None)
    assert isinstance(outcome, AuthorizeErrorPage)


# -- grants and parameters --------------------------------------------------------------------


@pytest.mark.parametrize("response_type", ["token", "id_token", "code token", ""])
async def test_only_response_type_code(rt: RtWorld, response_type: str) -> None:
    row = await _session(rt)
    outcome = await _authorize(rt, row, response_type=response_type)
    assert isinstance(outcome, AuthorizeRedirect)
    assert _query(outcome.location)["error"] == "unsupported_response_type"


@pytest.mark.parametrize("grant", ["password", "refresh_token", "client_credentials",
                                   "implicit", None])
async def test_only_the_authorization_code_grant(rt: RtWorld, grant: str | None) -> None:
    row = await _session(rt)
    reply = await _redeem(rt, row, await _code(rt, row), grant_type=grant, username="tech",
                          password="x")
    assert reply.status == 400
    assert reply.body["error"] in ("unsupported_grant_type", "invalid_request")


async def test_repeated_parameters_are_refused(rt: RtWorld) -> None:
    row = await _session(rt)
    params = [*_params(row), ("code_challenge", CHALLENGE)]
    outcome = await rt.oauth.authorize(params, urlencode(params), _principal(rt))
    assert isinstance(outcome, AuthorizeRedirect)
    assert _query(outcome.location)["error"] == "invalid_request"
    params = [*_params(row), ("redirect_uri", row.redirect_uri)]
    outcome = await rt.oauth.authorize(params, urlencode(params), _principal(rt))
    assert isinstance(outcome, AuthorizeErrorPage)


async def test_prune_removes_spent_rows_only(rt: RtWorld) -> None:
    row = await _session(rt)
    code = await _code(rt, row)
    assert (await _redeem(rt, row, code)).status == 200
    await _code(rt, row)
    assert await rt.oauth.prune() == 0
    rt.clock.advance(61)
    assert await rt.oauth.prune() == 1, "the unredeemed code; the redeemed one's token lives"
    rt.clock.advance(30 * 60)
    assert await rt.oauth.prune() == 1
