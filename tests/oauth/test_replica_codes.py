"""Authorization codes with two portal replicas (own database engines, one database): a code
is redeemed once whichever replicas the attempts reach, and the revocation is seen by both."""

from __future__ import annotations

import asyncio

import pytest

from ewsgate.portal.oauth.client_auth import basic_auth_header
from ewsgate.portal.oauth.server import AuthorizationServer, OAuthConfig
from ewsgate.portal.oauth.tokens import verify_access_token
from ewsgate.portal.store.db import Database
from sessions.rt_world import ISSUER, RtWorld

from .test_server import VERIFIER, _code, _relay_name, _session

pytestmark = pytest.mark.db


async def test_a_code_raced_on_two_replicas_is_redeemed_once_and_revoked_on_both(
        rt: RtWorld, rt_database_url: str) -> None:
    db_b = Database(rt_database_url)
    oauth_b = AuthorizationServer(db_b, rt.issuer, OAuthConfig(issuer=ISSUER), rt.clock)
    try:
        row = await _session(rt)
        code = await _code(rt, row)  # issued by replica A
        relay = _relay_name(rt, row.relay_id)
        form = [("grant_type", "authorization_code"), ("code", code),
                ("redirect_uri", row.redirect_uri), ("code_verifier", VERIFIER)]
        auth = basic_auth_header(str(rt.relays[relay]), rt.relay_secrets[relay])
        replies = await asyncio.gather(*(server.token(form, auth)
                                         for server in (rt.oauth, oauth_b) * 3))
        statuses = sorted(reply.status for reply in replies)
        assert statuses == [200, 400, 400, 400, 400, 400]
        winner = next(reply for reply in replies if reply.status == 200)
        claims = verify_access_token(str(winner.body["access_token"]),
                                     rt.keys.public_key_set(), issuer=ISSUER,
                                     audience=str(row.relay_id),
                                     now=int(rt.clock.now.timestamp()))
        for server, database in ((rt.oauth, rt.db), (oauth_b, db_b)):
            async with database.transaction() as s:
                assert await server.revoked_token_ids(s, row.id) == [claims["jti"]]
    finally:
        await db_b.dispose()
