"""Remote Technician over HTTP: the REST API, the relay API, the OAuth endpoints' headers, the
login round trip and the pages, on an ASGI portal (no sockets; the real-process flow is in
tests/integration)."""

from __future__ import annotations

import base64
import csv
import io
import json
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ewsgate.portal.oauth.client_auth import basic_auth_header
from ewsgate.portal.oauth.pkce import s256_challenge
from ewsgate.portal.oauth.tokens import verify_access_token
from sessions.rt_http import BASE, Portal
from sessions.rt_world import ISSUER, PASSWORD, settle

pytestmark = pytest.mark.db

VERIFIER = "V" * 50


def _relay_auth(portal: Portal, name: str = "relay-x") -> dict[str, str]:
    w = portal.world
    return {"Authorization": basic_auth_header(str(w.relays[name]), w.relay_secrets[name])}


async def _start(portal: Portal, client, who: str = "tech") -> dict:
    csrf = await portal.sign_in(client, who)
    response = await client.post(f"/api/v1/devices/{portal.world.device['on']}/remote-sessions",
                                  headers={"X-CSRF-Token": csrf, "Origin": BASE})
    assert response.status_code == 201, response.text
    await settle(portal.world)
    return response.json()


def _authorize_url(session: dict, relay_id: int, **over: str) -> str:
    params = {"response_type": "code", "client_id": str(relay_id),
              "redirect_uri": session["url"] + ".ewsgate/callback", "state": "s1",
              "code_challenge": s256_challenge(VERIFIER), "code_challenge_method": "S256"}
    params.update(over)
    return "/oauth/authorize?" + urlencode(params)


# -- REST: sessions ---------------------------------------------------------------------------


async def test_api_start_status_list_and_end(portal: Portal) -> None:
    async with portal.client() as client:
        body = await _start(portal, client)
        assert set(body) >= {"session_id", "job_id", "url", "status", "expires_at"}
        assert body["status"] == "verifying"
        status = await client.get(f"/api/v1/remote-sessions/{body['session_id']}")
        assert status.json()["status"] == "ready"
        assert status.headers["cache-control"] == "no-store"
        listed = await client.get("/api/v1/remote-sessions")
        assert [s["session_id"] for s in listed.json()["sessions"]] == [body["session_id"]]
        no_csrf = await client.delete(f"/api/v1/remote-sessions/{body['session_id']}")
        assert no_csrf.status_code == 403 and no_csrf.json()["error"]["code"] == "csrf_failed"
    async with portal.client() as admin:
        token = await portal.token("admin")
        ended = await admin.delete(f"/api/v1/remote-sessions/{body['session_id']}",
                                   headers={"Authorization": f"Bearer {token}"})
        assert ended.status_code == 200 and ended.json()["status"] == "ended"


async def test_api_refuses_anonymous_and_wrong_roles(portal: Portal) -> None:
    device = portal.world.device["on"]
    async with portal.client() as client:
        anonymous = await client.post(f"/api/v1/devices/{device}/remote-sessions")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "not_authenticated"
        token = await portal.token("viewer")
        viewer = await client.post(f"/api/v1/devices/{device}/remote-sessions",
                                   headers={"Authorization": f"Bearer {token}"})
        assert viewer.status_code == 403 and viewer.json()["error"]["code"] == "forbidden"
        token = await portal.token("tech")
        off = await client.post(f"/api/v1/devices/{portal.world.device['off']}/remote-sessions",
                                headers={"Authorization": f"Bearer {token}"})
        assert off.status_code == 409
        assert off.json()["error"]["code"] == "remote_technician_disabled"


async def test_cross_site_cookie_request_is_refused(portal: Portal) -> None:
    async with portal.client() as client:
        csrf = await portal.sign_in(client, "tech")
        response = await client.post(
            f"/api/v1/devices/{portal.world.device['on']}/remote-sessions",
            headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
        assert response.status_code == 403


# -- OAuth over HTTP --------------------------------------------------------------------------


async def test_authorize_sends_an_anonymous_browser_to_login_and_back(portal: Portal) -> None:
    async with portal.client() as tech:
        session = await _start(portal, tech)
    relay_id = portal.world.relays["relay-x"]
    url = _authorize_url(session, relay_id)
    async with portal.client() as browser:
        first = await browser.get(url)
        assert first.status_code == 303
        location = first.headers["location"]
        assert location.startswith("/login?next=")
        assert parse_qs(urlsplit(location).query)["next"] == [url]
        form = await browser.get(location)
        token = form.text.split('name="csrf_token" value="')[1].split('"')[0]
        signed_in = await browser.post("/login", data={
            "email": portal.world.emails["tech"], "password": PASSWORD, "csrf_token": token,
            "next": url}, headers={"Origin": BASE})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == url
        back = await browser.get(url)
        assert back.status_code == 303
        assert back.headers["location"].startswith(session["url"] + ".ewsgate/callback?code=")


async def test_full_code_flow_over_http_and_headers(portal: Portal) -> None:
    async with portal.client() as browser:
        session = await _start(portal, browser)
        relay_id = portal.world.relays["relay-x"]
        answer = await browser.get(_authorize_url(session, relay_id),
                                   headers={"Origin": "https://evil.example"})
        assert answer.status_code == 303
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert not any(h.startswith("access-control-") for h in answer.headers)
        query = parse_qs(urlsplit(answer.headers["location"]).query)
        assert query["iss"] == [ISSUER] and query["state"] == ["s1"]
        code = query["code"][0]
    async with portal.client() as relay:
        reply = await relay.post("/oauth/token", data={
            "grant_type": "authorization_code", "code": code,
            "redirect_uri": session["url"] + ".ewsgate/callback", "code_verifier": VERIFIER},
            headers={**_relay_auth(portal), "Origin": "https://evil.example"})
        assert reply.status_code == 200, reply.text
        assert reply.headers["cache-control"] == "no-store"
        assert not any(h.startswith("access-control-") for h in reply.headers)
        body = reply.json()
        assert "refresh_token" not in body
        claims = verify_access_token(body["access_token"], portal.world.keys.public_key_set(),
                                     issuer=ISSUER, audience=str(relay_id),
                                     now=int(portal.world.clock.now.timestamp()))
        assert claims["sid"] == session["session_id"]
        again = await relay.post("/oauth/token", data={
            "grant_type": "authorization_code", "code": code,
            "redirect_uri": session["url"] + ".ewsgate/callback", "code_verifier": VERIFIER},
            headers=_relay_auth(portal))
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


async def test_error_page_for_a_bad_redirect_uri_is_not_a_redirect(portal: Portal) -> None:
    async with portal.client() as browser:
        session = await _start(portal, browser)
        answer = await browser.get(_authorize_url(
            session, portal.world.relays["relay-x"],
            redirect_uri="https://evil.example/.ewsgate/callback"))
        assert answer.status_code == 400 and "location" not in answer.headers
        assert "redirect_uri" in answer.text
        assert answer.headers["x-frame-options"] == "DENY"


async def test_token_endpoint_refuses_query_strings_and_json(portal: Portal) -> None:
    async with portal.client() as relay:
        in_url = await relay.post("/oauth/token?code=x&grant_type=authorization_code",
                                  headers=_relay_auth(portal))
        assert in_url.status_code == 400 and in_url.json()["error"] == "invalid_request"
        as_json = await relay.post("/oauth/token", json={"grant_type": "authorization_code"},
                                   headers=_relay_auth(portal))
        assert as_json.status_code == 400
        unauthenticated = await relay.post("/oauth/token", data={"grant_type": "password",
                                                                 "username": "a",
                                                                 "password": "b"})
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["www-authenticate"].startswith("Basic")
        get = await relay.get("/oauth/token")
        assert get.status_code == 405


async def test_metadata_and_jwks(portal: Portal) -> None:
    async with portal.client() as client:
        meta = (await client.get("/.well-known/oauth-authorization-server")).json()
        assert meta["issuer"] == ISSUER
        assert meta["authorization_endpoint"] == ISSUER + "/oauth/authorize"
        assert meta["token_endpoint"] == ISSUER + "/oauth/token"
        assert meta["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
        assert meta["code_challenge_methods_supported"] == ["S256"]
        assert meta["grant_types_supported"] == ["authorization_code"]
        assert meta["response_types_supported"] == ["code"]
        assert meta["token_endpoint_auth_methods_supported"] == ["client_secret_basic"]
        jwks = await client.get("/.well-known/jwks.json", headers={"Origin": "https://x.test"})
        keys = jwks.json()["keys"]
        assert [k["kid"] for k in keys] == [portal.world.keys.active.kid]
        assert all("d" not in k for k in keys)
        assert "access-control-allow-origin" not in jwks.headers


# -- the relay API ----------------------------------------------------------------------------


def _entry(session_id: str, seq: int, **over) -> dict:
    entry = {"session_id": session_id, "seq": seq, "time": 1796040000.5,
             "user": "tech@example.com", "method": "GET", "url": f"/page/{seq}",
             "status": 200, "bytes_in": 0, "bytes_out": 100 + seq, "duration_ms": 3,
             "outcome": "ok", "detail": None}
    entry.update(over)
    return entry


async def test_log_batches_are_stored_once_per_session_and_seq(portal: Portal) -> None:
    async with portal.client() as client:
        session = await _start(portal, client)
        sid = session["session_id"]
        first = await client.post("/api/v1/relay/log-batches", headers=_relay_auth(portal),
                                  json={"relay_id": str(portal.world.relays["relay-x"]),
                                        "entries": [_entry(sid, n) for n in (1, 2, 3)]})
        assert first.status_code == 200, first.text
        assert first.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
        again = await client.post("/api/v1/relay/log", headers=_relay_auth(portal),
                                  json={"entries": [_entry(sid, n) for n in (2, 3, 4, 4)]})
        assert again.json() == {"accepted": 1, "duplicates": 3, "rejected": []}
        log = (await client.get(f"/api/v1/jobs/{session['job_id']}/log")).json()
        assert [e["seq"] for e in log["entries"]] == [1, 2, 3, 4]
        assert log["live"] is True and log["entries"][0]["user_email"] == "tech@example.com"
        tail = (await client.get(f"/api/v1/jobs/{session['job_id']}/log?after_seq=2")).json()
        assert [e["seq"] for e in tail["entries"]] == [3, 4]


async def test_log_entries_for_another_relays_session_or_malformed_are_rejected(
        portal: Portal) -> None:
    async with portal.client() as client:
        session = await _start(portal, client)
        sid = session["session_id"]
        foreign = await client.post("/api/v1/relay/log-batches",
                                    headers=_relay_auth(portal, "relay-y"),
                                    json={"entries": [_entry(sid, 1)]})
        assert foreign.json()["accepted"] == 0
        assert foreign.json()["rejected"][0]["code"] == "unknown_session"
        bad = await client.post("/api/v1/relay/log-batches", headers=_relay_auth(portal),
                                json={"entries": [_entry(sid, 1), _entry(sid, -1),
                                                  _entry(sid, 2, time="yesterday"),
                                                  _entry(sid, 3, extra=1), "x"]})
        assert bad.json()["accepted"] == 1
        assert [r["index"] for r in bad.json()["rejected"]] == [1, 2, 3, 4]
        wrong_secret = await client.post(
            "/api/v1/relay/log-batches", json={"entries": []},
            headers={"Authorization": basic_auth_header(
                str(portal.world.relays["relay-x"]), "ewsr_wrong")})
        assert wrong_secret.status_code == 401
        not_json = await client.post("/api/v1/relay/log-batches", content=b"{",
                                     headers=_relay_auth(portal))
        assert not_json.status_code == 422


async def test_relay_reads_only_its_own_sessions(portal: Portal) -> None:
    async with portal.client() as client:
        session = await _start(portal, client)
        sid = session["session_id"]
        own = await client.get(f"/api/v1/relay/sessions/{sid}", headers=_relay_auth(portal))
        body = own.json()
        assert body["status"] == "ready" and body["live"] is True
        assert body["user_email"] == "tech@example.com" and body["revoked_token_ids"] == []
        other = await client.get(f"/api/v1/relay/sessions/{sid}",
                                 headers=_relay_auth(portal, "relay-y"))
        assert other.status_code == 404
        anonymous = await client.get(f"/api/v1/relay/sessions/{sid}")
        assert anonymous.status_code == 401
        portal.world.clock.advance(30 * 60)
        expired = await client.get(f"/api/v1/relay/sessions/{sid}", headers=_relay_auth(portal))
        assert expired.json()["live"] is False and expired.json()["status"] == "ended"


async def test_relay_certificate_carries_only_registered_names(portal: Portal) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portal.test")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("portal.test")]),
                          critical=False)
           .sign(key, hashes.SHA256()))
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    async with portal.client() as client:
        reply = await client.post("/api/v1/relay/certificate", json={"csr_pem": pem},
                                  headers=_relay_auth(portal))
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["dns_names"] == ["rt.localhost", "*.rt.localhost"]
        assert body["ip_addresses"] == ["127.0.0.1"]
        cert = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "portal.test" not in sans.get_values_for_type(x509.DNSName)
        cert.verify_directly_issued_by(portal.ca.cert)
        ca_pem = await client.get("/.well-known/ewsgate-ca.pem")
        assert ca_pem.text.encode() == portal.ca.cert_pem
        garbage = await client.post("/api/v1/relay/certificate", json={"csr_pem": "nope"},
                                    headers=_relay_auth(portal))
        assert garbage.status_code == 422
        assert garbage.json()["error"]["code"] == "relay_cert.bad_csr"
        anonymous = await client.post("/api/v1/relay/certificate", json={"csr_pem": pem})
        assert anonymous.status_code == 401


# -- exports ----------------------------------------------------------------------------------


async def test_csv_and_har_exports(portal: Portal) -> None:
    async with portal.client() as client:
        session = await _start(portal, client)
        await client.post("/api/v1/relay/log-batches", headers=_relay_auth(portal),
                          json={"entries": [_entry(session["session_id"], n) for n in (1, 2)]})
        job = session["job_id"]
        exported = await client.get(f"/api/v1/jobs/{job}/log?format=csv")
        assert exported.headers["content-type"].startswith("text/csv")
        assert "attachment" in exported.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(exported.text)))
        assert [r[0] for r in rows] == ["seq", "1", "2"]
        har = json.loads((await client.get(f"/api/v1/jobs/{job}/log?format=har")).text)
        urls = [e["request"]["url"] for e in har["log"]["entries"]]
        assert urls == [session["url"] + "page/1", session["url"] + "page/2"]
        bad = await client.get(f"/api/v1/jobs/{job}/log?format=xml")
        assert bad.status_code == 422
    async with portal.client() as outsider:
        token = await portal.token("techB")
        hidden = await outsider.get(f"/api/v1/jobs/{job}/log?format=csv",
                                    headers={"Authorization": f"Bearer {token}"})
        assert hidden.status_code == 404


# -- pages ------------------------------------------------------------------------------------


def _csrf(html: str) -> str:
    return html.split('name="csrf_token" value="')[1].split('"')[0]


async def test_open_button_starts_a_session_and_shows_progress(portal: Portal) -> None:
    device = portal.world.device["on"]
    async with portal.client() as browser:
        await portal.sign_in(browser, "tech")
        page = await browser.get(f"/devices/{device}")
        assert 'id="rt-device-sessions"' in page.text
        assert "js/remote-sessions.js" in page.text
        started = await browser.post(f"/devices/{device}/open", data={"csrf_token": _csrf(
            page.text)}, headers={"Origin": BASE})
        assert started.status_code == 303
        target = started.headers["location"]
        assert target.startswith("/remote-sessions/")
        await settle(portal.world)
        progress = await browser.get(target)
        assert progress.status_code == 200
        assert 'id="rt-session"' in progress.text and "data-expires-in=\"1800\"" in progress.text
        assert 'id="rt-open"' in progress.text and "End session" in progress.text
        session_id = target.rsplit("/", 1)[1]
        ended = await browser.post(f"{target}/end", data={"csrf_token": _csrf(progress.text)},
                                   headers={"Origin": BASE})
        assert ended.status_code == 303
        status = await browser.get(f"/api/v1/remote-sessions/{session_id}")
        assert status.json()["status"] == "ended"


async def test_administrator_terminates_from_the_live_sessions_page(portal: Portal) -> None:
    async with portal.client() as tech:
        session = await _start(portal, tech)
    async with portal.client() as admin:
        await portal.sign_in(admin, "admin")
        page = await admin.get("/remote-sessions")
        assert session["session_id"] in page.text and "Terminate" in page.text
        done = await admin.post(f"/remote-sessions/{session['session_id']}/end",
                                data={"csrf_token": _csrf(page.text), "next": "/remote-sessions"},
                                headers={"Origin": BASE})
        assert done.status_code == 303 and done.headers["location"] == "/remote-sessions"
        after = await admin.get("/remote-sessions")
        assert session["session_id"] not in after.text


async def test_job_page_shows_live_log_and_export_links(portal: Portal) -> None:
    async with portal.client() as browser:
        session = await _start(portal, browser)
        page = await browser.get(f"/jobs/{session['job_id']}")
        assert 'data-live-log="true"' in page.text
        assert f"/api/v1/jobs/{session['job_id']}/log?format=csv" in page.text
        assert f"/api/v1/jobs/{session['job_id']}/log?format=har" in page.text


async def test_basic_auth_helper_encodes_like_rfc6749() -> None:
    header = basic_auth_header("1", "a:b c")
    assert base64.b64decode(header.split()[1]) == b"1:a%3Ab%20c"


async def test_relay_fetches_its_certificates_into_its_data_dir(portal: Portal,
                                                                tmp_path) -> None:
    import stat

    from ewsgate.relay.portal_certificate import fetch_relay_certificates

    world = portal.world
    async with portal.client() as http:
        got = await fetch_relay_certificates(BASE, str(world.relays["relay-x"]),
                                             world.relay_secrets["relay-x"],
                                             tmp_path / "relay", http=http)
        assert got.dns_names == ["rt.localhost", "*.rt.localhost"]
        key_mode = stat.S_IMODE((tmp_path / "relay" / "tunnel-key.pem").stat().st_mode)
        assert key_mode == 0o600
        cert = x509.load_pem_x509_certificate((tmp_path / "relay" / "browser-cert.pem")
                                              .read_bytes())
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(
            (tmp_path / "relay" / "ca.pem").read_bytes()))
        key = serialization.load_pem_private_key(
            (tmp_path / "relay" / "tunnel-key.pem").read_bytes(), None)
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()
        with pytest.raises(httpx.HTTPStatusError):
            await fetch_relay_certificates(BASE, str(world.relays["relay-x"]), "ewsr_wrong",
                                           tmp_path / "other", http=http)


async def test_the_client_address_goes_from_the_relays_entry_to_the_api_and_exports(
        portal: Portal, tmp_path) -> None:
    from ewsgate.relay.access_log import AccessLog

    async with portal.client() as client:
        session = await _start(portal, client)
        sid, job = session["session_id"], session["job_id"]
        # what the relay spools for a post-parse refusal and for a request of an older relay
        spool = AccessLog(tmp_path / "spool", None)
        try:
            refused = spool.record(session_id=sid, time=1796040000.5, user="tech@example.com",
                                   method="GET", url="/a", status=400, bytes_in=0,
                                   bytes_out=0, duration_ms=1, outcome="refused",
                                   detail="header_name_underscore", client="2001:db8::7")
            plain = spool.record(session_id=sid, time=1796040001.0, user=None, method="GET",
                                 url="/b", status=200, bytes_in=0, bytes_out=5,
                                 duration_ms=1, outcome="ok")
        finally:
            spool.close()
        assert "client" not in plain.to_json()  # older portals accept what older relays sent
        stored = await client.post("/api/v1/relay/log-batches", headers=_relay_auth(portal),
                                   json={"entries": [refused.to_json(), plain.to_json(),
                                                     _entry(sid, 3, client="x" * 100)]})
        assert stored.json() == {"accepted": 3, "duplicates": 0, "rejected": []}, stored.text
        entries = (await client.get(f"/api/v1/jobs/{job}/log")).json()["entries"]
        assert [e["client"] for e in entries] == ["2001:db8::7", None, "x" * 63 + "…"]
        rows = list(csv.reader(io.StringIO(
            (await client.get(f"/api/v1/jobs/{job}/log?format=csv")).text)))
        assert rows[0][-1] == "client" and rows[1][-1] == "2001:db8::7" and rows[2][-1] == ""
        har = json.loads((await client.get(f"/api/v1/jobs/{job}/log?format=har")).text)
        assert har["log"]["entries"][0]["_clientAddress"] == "2001:db8::7"
        bad = await client.post("/api/v1/relay/log-batches", headers=_relay_auth(portal),
                                json={"entries": [_entry(sid, 4, client=7)]})
        assert bad.json()["rejected"][0]["message"] == "client must be a string"
