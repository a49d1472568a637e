"""The proxy end to end over real TLS and TCP: sign-in, forwarding, rewriting, hardening."""

from __future__ import annotations

from pathlib import Path

import pytest

from ewsgate.relay.device_cookies import DeviceCookies

from .helpers import FakePortal, RawServer, Relay, Seen, device_app, spool_entries

pytestmark = pytest.mark.integration


def _page(body: bytes, ctype: str = "text/html"):
    return lambda request, _body: (200, [("Content-Type", ctype)], body)


async def test_page_through_relay_after_sign_in(tmp_path: Path, portal: FakePortal) -> None:
    seen = Seen()
    html = b'<a href="http://10.0.0.5/status">status</a>'
    async with RawServer(device_app({"/": _page(html)}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        response = await relay.fetch(sid, "GET", "/", cookie=cookie)
        assert response.status == 200
        assert response.body == f'<a href="https://{relay.host(sid)}/status">status</a>'.encode()
        request, _ = seen.requests[-1]
        headers = dict(request.headers)
        assert headers[b"host"] == b"10.0.0.5"
        assert b"cookie" not in headers  # the relay's cookie never reaches the device


async def test_no_cookie_starts_pkce_sign_in_with_exact_redirect_uri(
        tmp_path: Path, portal: FakePortal) -> None:
    from urllib.parse import parse_qs, urlsplit

    async with RawServer(device_app({}, Seen())) as device, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        response = await relay.fetch(sid, "GET", "/status?x=1")
        assert response.status == 302
        location = urlsplit(response.header("location"))
        assert f"{location.scheme}://{location.netloc}{location.path}" == (
            portal.url + "/oauth/authorize")
        query = {k: v[0] for k, v in parse_qs(location.query).items()}
        assert query["response_type"] == "code"
        assert query["client_id"] == "7"
        assert query["redirect_uri"] == f"https://s-{sid}.rt.localhost:{relay.port}/.ewsgate/callback"
        assert query["code_challenge_method"] == "S256"
        assert len(query["code_challenge"]) == 43
        assert len(query["state"]) >= 32
        state_cookie = response.header("set-cookie")
        assert state_cookie.startswith("__Host-ewsgate_st=" + query["state"])
        assert "Secure" in state_cookie and "HttpOnly" in state_cookie and "Path=/" in state_cookie
        assert "Domain" not in state_cookie


async def test_callback_sets_host_cookie_and_returns_to_first_path(
        tmp_path: Path, portal: FakePortal) -> None:
    from urllib.parse import urlsplit

    async with RawServer(device_app({}, Seen())) as device, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port, expires_in=600)
        first = await relay.fetch(sid, "GET", "/settings?tab=2")
        state_cookie = first.header("set-cookie").split(";", 1)[0]
        callback = urlsplit(portal.authorize(first.header("location")))
        done = await relay.fetch(sid, "GET", f"{callback.path}?{callback.query}",
                                 cookie=state_cookie)
        assert done.status == 303
        assert done.header("location") == "/settings?tab=2"
        cookie = next(c for c in done.all("set-cookie") if c.startswith("__Host-ewsgate_rt="))
        attributes = [part.strip() for part in cookie.split(";")]
        assert {"Secure", "HttpOnly", "SameSite=Lax", "Path=/"} <= set(attributes)
        assert not any(a.lower().startswith("domain") for a in attributes)
        max_age = int(next(a for a in attributes if a.startswith("Max-Age="))[8:])
        assert 590 <= max_age <= 600  # expires with the session
        # the code was redeemed with the verifier and the relay's credentials
        form = portal.token_requests[-1]
        assert form["grant_type"] == "authorization_code" and form["code_verifier"]
        # replaying the same callback is refused: state is single use
        again = await relay.fetch(sid, "GET", f"{callback.path}?{callback.query}",
                                  cookie=state_cookie)
        assert again.status == 403


async def test_callback_without_the_browsers_state_cookie_is_refused(
        tmp_path: Path, portal: FakePortal) -> None:
    from urllib.parse import urlsplit

    async with RawServer(device_app({}, Seen())) as device, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        first = await relay.fetch(sid, "GET", "/")
        callback = urlsplit(portal.authorize(first.header("location")))
        done = await relay.fetch(sid, "GET", f"{callback.path}?{callback.query}")
        assert done.status == 403
        assert not portal.token_requests  # the code was not even redeemed


@pytest.mark.parametrize("problem", ["wrong_session", "wrong_audience", "foreign_key",
                                     "wrong_type", "expired"])
async def test_callback_refuses_tokens_that_are_not_for_this_session(
        tmp_path: Path, portal: FakePortal, problem: str) -> None:
    import time
    from urllib.parse import urlsplit

    from joserfc.jwk import ECKey

    async with RawServer(device_app({}, Seen())) as device, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        other = relay.add_device(device.port)
        first = await relay.fetch(sid, "GET", "/")
        state_cookie = first.header("set-cookie").split(";", 1)[0]
        callback = urlsplit(portal.authorize(first.header("location")))
        code = callback.query.split("code=")[1].split("&")[0]
        now = int(time.time())
        base = {"iss": portal.url, "aud": "7", "sub": "42", "email": "t@example.com",
                "sid": sid, "iat": now, "nbf": now, "exp": now + 300, "jti": "j",
                "typ": "ewsgate-access-token"}
        if problem == "wrong_session":
            token = portal.sign({**base, "sid": other})
        elif problem == "wrong_audience":
            token = portal.sign({**base, "aud": "8"})
        elif problem == "foreign_key":
            token = portal.sign(base, key=ECKey.generate_key("P-256", parameters={"kid": "k1"}))
        elif problem == "wrong_type":
            token = portal.sign({**base, "typ": "ewsgate-tunnel-ticket"},
                                typ="ewsgate-tunnel-ticket")
        else:
            token = portal.sign({**base, "iat": now - 600, "nbf": now - 600, "exp": now - 1})
        portal.codes[code]["token"] = token
        done = await relay.fetch(sid, "GET", f"{callback.path}?{callback.query}",
                                 cookie=state_cookie)
        assert done.status == 403
        assert not any(c.startswith("__Host-ewsgate_rt=") for c in done.all("set-cookie"))


async def test_token_in_query_string_is_ignored(tmp_path: Path, portal: FakePortal) -> None:
    seen = Seen()
    async with RawServer(device_app({"/": _page(b"secret")}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        token = portal.access_token(sid=sid)
        for query in (f"access_token={token}", f"token={token}", "code=abc&state=x"):
            response = await relay.fetch(sid, "GET", f"/?{query}",
                                         headers=[("Authorization", f"Bearer {token}")])
            assert response.status == 302
        assert not seen.requests


async def test_cookie_of_session_a_is_refused_on_session_b(
        tmp_path: Path, portal: FakePortal) -> None:
    seen = Seen()
    async with RawServer(device_app({"/": _page(b"device page")}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        a = relay.add_device(device.port)
        b = relay.add_device(device.port)
        cookie_a = await relay.login(a)
        assert (await relay.fetch(a, "GET", "/", cookie=cookie_a)).status == 200
        count = len(seen.requests)
        on_b = await relay.fetch(b, "GET", "/", cookie=cookie_a)
        assert on_b.status == 302  # treated as signed out: sign in again for B
        assert len(seen.requests) == count
        forged = cookie_a[:-3] + ("AAA" if not cookie_a.endswith("AAA") else "BBB")
        assert (await relay.fetch(a, "GET", "/", cookie=forged)).status == 302
        # another user's cookie minted for B does not open A either
        portal.session_state[b] = {"user_id": "99"}
        cookie_b = await relay.login(b, sub="99", email="other@example.com")
        assert (await relay.fetch(a, "POST", "/x", cookie=cookie_b)).status == 401


async def test_request_headers_are_rewritten_to_the_devices_view(
        tmp_path: Path, portal: FakePortal) -> None:
    seen = Seen()
    async with RawServer(device_app({"/form": lambda r, b: (200, [], b"ok")}, seen)) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port, endpoints=(__import__(
            "ewsgate.relay.upstream", fromlist=["Endpoint"]).Endpoint("http", 8080),))
        cookie = await relay.login(sid)
        origin = f"https://{relay.host(sid)}"
        # the device's cookie as the browser holds it (namespaced for this session by the
        # relay, docs/relay.md); a cookie outside the namespace is not the device's: stripped
        device_cookie = f"{DeviceCookies(sid).prefix}.AuthCookie=dev1"
        response = await relay.fetch(sid, "POST", "/form", body=b"a=1", cookie=(
            cookie + f"; {device_cookie}; Stray=1"), headers=[
            ("Origin", origin), ("Referer", origin + "/page?x=1"),
            ("Sec-Fetch-Site", "same-origin"), ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Host", "evil.example"), ("Forwarded", "for=6.6.6.6"),
            ("X-Real-IP", "6.6.6.6"), ("Authorization", "Basic YWRtaW46YWRtaW4="),
            ("Proxy-Authorization", "Basic eA=="), ("Accept-Encoding", "br, zstd, gzip"),
            ("Connection", "keep-alive, X-Secret"), ("X-Secret", "1")])
        assert response.status == 200
        request, body = seen.requests[-1]
        headers = {k: v for k, v in request.headers}
        assert body == b"a=1"
        assert headers[b"host"] == b"10.0.0.5:8080"
        assert headers[b"origin"] == b"http://10.0.0.5:8080"
        assert headers[b"referer"] == b"http://10.0.0.5:8080/page?x=1"
        assert headers[b"cookie"] == b"AuthCookie=dev1"
        assert headers[b"authorization"] == b"Basic YWRtaW46YWRtaW4="  # device Basic auth works
        assert headers[b"accept-encoding"] == b"gzip, deflate"
        for name in (b"x-forwarded-for", b"x-forwarded-host", b"forwarded", b"x-real-ip",
                     b"proxy-authorization", b"x-secret"):
            assert name not in headers


async def test_response_hardening_replaces_device_cors_and_csp(
        tmp_path: Path, portal: FakePortal) -> None:
    headers = [("Content-Type", "text/html"), ("Access-Control-Allow-Origin", "*"),
               ("Access-Control-Allow-Credentials", "true"),
               ("Content-Security-Policy", "default-src *"), ("Service-Worker-Allowed", "/"),
               ("X-Frame-Options", "ALLOWALL"), ("Alt-Svc", 'h3=":443"'),
               ("Clear-Site-Data", '"cookies"'), ("Server", "EWS/1.0")]
    route = {"/": lambda r, b: (200, headers, b"<p>hi</p>")}
    async with RawServer(device_app(route, Seen())) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        response = await relay.fetch(sid, "GET", "/", cookie=cookie)
        assert response.status == 200
        names = {k.lower() for k, _ in response.headers}
        assert not any(n.startswith(b"access-control-") for n in names)
        assert b"service-worker-allowed" not in names
        assert b"alt-svc" not in names and b"clear-site-data" not in names
        assert response.all("content-security-policy") == [
            "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
            "font-src 'self' data:; media-src 'self' blob:; "
            f"connect-src 'self' wss://{relay.host(sid)}; form-action 'self'; "
            "frame-src 'self'; frame-ancestors 'self'; base-uri 'self'; object-src 'none'; "
            "worker-src 'none'; manifest-src 'self'"]
        assert response.header("x-content-type-options") == "nosniff"
        assert response.header("referrer-policy") == "same-origin"
        assert response.header("cross-origin-opener-policy") == "same-origin"
        assert response.header("cross-origin-resource-policy") == "same-origin"
        assert response.all("x-frame-options") == ["SAMEORIGIN"]
        assert response.header("server") == "EWS/1.0"


async def test_device_cookies_become_host_only(tmp_path: Path, portal: FakePortal) -> None:
    headers = [("Set-Cookie", "AuthCookie=abc; Domain=rt.localhost; Path=/; HttpOnly"),
               ("Set-Cookie", "wimsesid=1; domain=.10.0.0.5; path=/web"),
               ("Set-Cookie", "__Host-ewsgate_rt=stolen; Secure; Path=/"),
               ("Set-Cookie", "x=1; Path=relative")]
    async with RawServer(device_app({"/": lambda r, b: (200, headers, b"")}, Seen())) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        response = await relay.fetch(sid, "GET", "/", cookie=cookie)
        # host-only and confined to this session: __Host- (no Domain possible), Secure,
        # Path=/, the device's name and path kept inside this session's namespace
        space = DeviceCookies(sid).prefix
        assert response.all("set-cookie") == [
            f"{space}.AuthCookie=abc; Path=/; Secure; HttpOnly",
            f"{space}{b'/web'.hex()}.wimsesid=1; Path=/; Secure", f"{space}.x=1; Path=/; Secure"]


async def test_redirect_headers_are_rewritten(tmp_path: Path, portal: FakePortal) -> None:
    routes = {
        "/": lambda r, b: (302, [("Location", "http://10.0.0.5/login?next=http://10.0.0.5/")], b""),
        "/https": lambda r, b: (301, [("Location", "https://PRINTER.lan:443/x")], b""),
        "/refresh": lambda r, b: (200, [("Refresh", "0; url=http://10.0.0.5/a"),
                                        ("Content-Location", "//10.0.0.5/b")], b""),
        "/away": lambda r, b: (302, [("Location", "http://192.168.1.1/admin")], b""),
        "/vendor": lambda r, b: (302, [("Location", "https://support.example.com/x")], b""),
    }
    async with RawServer(device_app(routes, Seen())) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port, hostname="printer.lan")
        cookie = await relay.login(sid)
        origin = f"https://{relay.host(sid)}"
        r = await relay.fetch(sid, "GET", "/", cookie=cookie)
        assert r.header("location") == f"{origin}/login?next={origin}/"
        r = await relay.fetch(sid, "GET", "/https", cookie=cookie)
        assert r.header("location") == f"{origin}/x"
        r = await relay.fetch(sid, "GET", "/refresh", cookie=cookie)
        assert r.header("refresh") == f"0; url={origin}/a"
        assert r.header("content-location") == f"//{relay.host(sid)}/b"
        r = await relay.fetch(sid, "GET", "/away", cookie=cookie)
        assert r.status == 502 and b"internal address" in r.body
        r = await relay.fetch(sid, "GET", "/vendor", cookie=cookie)
        assert r.header("location") == "https://support.example.com/x"


async def test_gzip_body_is_decompressed_rewritten_and_chunked(
        tmp_path: Path, portal: FakePortal) -> None:
    import gzip

    text = b"var ws = new WebSocket('ws://10.0.0.5/panel'); " * 5000
    routes = {"/app.js": lambda r, b: (200, [("Content-Type", "application/javascript"),
                                             ("Content-Encoding", "gzip")], gzip.compress(text))}
    async with RawServer(device_app(routes, Seen())) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        r = await relay.fetch(sid, "GET", "/app.js", cookie=cookie)
        assert r.status == 200
        assert r.header("content-encoding") is None
        assert r.header("transfer-encoding") == "chunked"
        expected = text.replace(b"ws://10.0.0.5", f"wss://{relay.host(sid)}".encode())
        assert r.body == expected


async def test_http10_device_with_eof_terminated_body(tmp_path: Path, portal: FakePortal) -> None:
    body = b"<html>" + b"x" * 200_000 + b"<a href='http://10.0.0.5/'>home</a></html>"

    async def old_device(reader, writer) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n")
        for i in range(0, len(body), 1000):
            writer.write(body[i:i + 1000])
            await writer.drain()
        writer.close()

    async with RawServer(old_device) as device, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        for _ in range(2):  # a second request needs a fresh device connection
            r = await relay.fetch(sid, "GET", "/", cookie=cookie)
            assert r.status == 200
            assert r.body == body.replace(b"http://10.0.0.5", f"https://{relay.host(sid)}".encode())


async def test_device_unreachable_gets_a_clear_page(tmp_path: Path, portal: FakePortal) -> None:
    async with RawServer(device_app({}, Seen())) as device:
        closed_port = device.port
    async with Relay(tmp_path, portal) as relay:
        sid = relay.add_device(closed_port)
        cookie = await relay.login(sid)
        r = await relay.fetch(sid, "GET", "/", cookie=cookie)
        assert r.status == 502
        assert b"could not reach the device" in r.body


async def test_unknown_session_and_foreign_host(tmp_path: Path, portal: FakePortal) -> None:
    async with Relay(tmp_path, portal) as relay:
        r = await relay.fetch("a" * 32, "GET", "/")
        assert r.status == 404 and b"No Remote Technician session" in r.body
        r = await relay.fetch("a" * 32, "GET", "/", host="portal.example.com")
        assert r.status == 404 and b"Not a Remote Technician address" in r.body


async def test_every_request_is_logged_in_order_with_its_outcome(
        tmp_path: Path, portal: FakePortal) -> None:
    import json

    routes = {"/up": lambda r, b: (200, [("Content-Type", "application/octet-stream")],
                                   b"x" * 1000)}
    async with RawServer(device_app(routes, Seen())) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid, email="ana@example.com")
        await relay.fetch(sid, "POST", "/up?x=1", body=b"y" * 300, cookie=cookie,
                          headers=[("Sec-Fetch-Site", "same-origin")])
        await relay.fetch(sid, "POST", "/up", body=b"z", cookie=cookie,
                          headers=[("Sec-Fetch-Site", "cross-site")])
        lines = b"".join(p.read_bytes() for p in (tmp_path / "spool").glob("segment-*"))
    raw = [json.loads(line) for line in lines.splitlines()]
    # the forwarded POST was spooled as pending before the device saw it, then completed
    assert [(e["seq"], e["outcome"]) for e in raw if e["seq"] == 3] == [(3, "pending"),
                                                                         (3, "ok")]
    entries = spool_entries(tmp_path / "spool")
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert [(e["method"], e["status"], e["outcome"]) for e in entries] == [
        ("GET", 302, "auth"), ("GET", 303, "auth"), ("POST", 200, "ok"), ("POST", 403, "refused")]
    ok = entries[2]
    assert ok["url"] == "/up?x=1" and ok["user"] == "ana@example.com"
    assert ok["bytes_in"] == 300 and ok["bytes_out"] == 1000 and ok["duration_ms"] >= 0
    assert entries[3]["detail"] == "cross_site_refused" and entries[3]["bytes_in"] == 0
    assert entries[1]["user"] == "ana@example.com"


async def test_sign_in_by_someone_other_than_the_owner_is_refused(
        tmp_path: Path, portal: FakePortal) -> None:
    from urllib.parse import urlsplit

    async with RawServer(device_app({}, Seen())) as device, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        portal.session_state[sid] = {"user_id": "42"}
        first = await relay.fetch(sid, "GET", "/")
        state_cookie = first.header("set-cookie").split(";", 1)[0]
        callback = urlsplit(portal.authorize(first.header("location"), sub="77"))
        done = await relay.fetch(sid, "GET", f"{callback.path}?{callback.query}",
                                 cookie=state_cookie)
        assert done.status == 403 and b"another user" in done.body
        assert not any(c.startswith("__Host-ewsgate_rt=") for c in done.all("set-cookie"))


async def test_session_ended_at_the_portal_shows_the_ended_page(
        tmp_path: Path, portal: FakePortal) -> None:
    async with RawServer(device_app({"/": _page(b"hi")}, Seen())) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        assert (await relay.fetch(sid, "GET", "/", cookie=cookie)).status == 200
        relay.directory.remove(sid)  # the agent's tunnel went away
        r = await relay.fetch(sid, "GET", "/", cookie=cookie)
        assert r.status == 502  # still live at the portal: the agent is reconnecting
        portal.session_state[sid] = {"live": False}  # a user or administrator ended it
        r = await relay.fetch(sid, "GET", "/", cookie=cookie)
        assert r.status == 410 and b"has ended" in r.body


async def test_expect_100_continue_is_answered_by_the_relay(
        tmp_path: Path, portal: FakePortal) -> None:
    import asyncio

    seen = Seen()
    routes = {"/fw": lambda r, b: (200, [("Content-Type", "text/plain")], b"got %d" % len(b))}
    async with RawServer(device_app(routes, seen)) as device, Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        reader, writer = await relay.connect(sid)
        writer.write((f"POST /fw HTTP/1.1\r\nHost: {relay.host(sid)}\r\nCookie: {cookie}\r\n"
                      "Content-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
                     .encode())
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert interim.startswith(b"HTTP/1.1 100")
        writer.write(b"hello")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200")
        request, body = seen.requests[-1]
        assert body == b"hello" and b"expect" not in dict(request.headers)


async def test_request_is_logged_before_the_browser_has_the_complete_response(
        tmp_path: Path, portal: FakePortal, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relay killed right after answering must still have the request in its spool: the
    entry is written before the write that completes the response (for a 200 from the device
    and for the relay's own pages)."""
    import asyncio

    from ewsgate.relay.access_log import AccessLog
    from ewsgate.relay.http_proxy import RelayProxy

    events: list[tuple[str, bytes]] = []
    record, handle = AccessLog.record, RelayProxy.handle

    def spy_record(self: AccessLog, **kwargs: object) -> object:
        events.append(("record", str(kwargs["url"]).encode()))
        return record(self, **kwargs)  # type: ignore[arg-type]

    async def spy_handle(self: RelayProxy, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        write = writer.write

        def spy_write(data: bytes) -> None:
            events.append(("write", bytes(data)))
            write(data)

        writer.write = spy_write  # type: ignore[method-assign]
        await handle(self, reader, writer)

    monkeypatch.setattr(AccessLog, "record", spy_record)
    monkeypatch.setattr(RelayProxy, "handle", spy_handle)
    async with RawServer(device_app({"/p": _page(b"device page")}, Seen())) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        events.clear()
        assert (await relay.fetch(sid, "GET", "/p", cookie=cookie)).status == 200
        assert (await relay.fetch(sid, "POST", "/p", cookie=cookie,
                                  headers=[("Sec-Fetch-Site", "cross-site")])).status == 403
    for url in (b"/p", b"/p"):
        logged = events.index(("record", url))
        completing = next(i for i, (kind, data) in enumerate(events)
                          if kind == "write" and (data.endswith(b"0\r\n\r\n")
                                                  or b"device page" in data
                                                  or b"</html>" in data))
        assert logged < completing, events
        del events[:completing + 1]
