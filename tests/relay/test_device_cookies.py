"""Device cookies confined to their session: the namespace, the shim, and attacks over raw TLS."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ewsgate.relay.device_cookies import DeviceCookies, HtmlShimInjector, path_matches

from .helpers import FakePortal, RawServer, Relay, Seen, device_app

SID_A = "a" * 32
SID_B = "b" * 32


def test_device_set_cookie_becomes_a_namespaced_host_cookie() -> None:
    space = DeviceCookies(SID_A)
    p = space.prefix
    assert p.startswith("__Host-dev.") and p != DeviceCookies(SID_B).prefix
    assert space.namespaced("sid=1; Domain=rt.example.com; Path=/; HttpOnly; SameSite=Strict;"
                            " Secure; Partitioned; Priority=High", "/login") == (
        f"{p}.sid=1; Path=/; Secure; HttpOnly; SameSite=Strict")
    assert space.namespaced("lang=en; Max-Age=60; path=/app", "/") == (
        f"{p}{b'/app'.hex()}.lang=en; Path=/; Secure; Max-Age=60")
    # no Path: the request's directory (RFC 6265 default-path); a relative Path is ignored
    assert space.namespaced("x=1", "/web/guest/index.cgi") == (
        f"{p}{b'/web/guest'.hex()}.x=1; Path=/; Secure")
    assert space.namespaced("x=1; Path=relative", "/index.html") == f"{p}.x=1; Path=/; Secure"
    # the relay's own names are never the device's, whatever the case; nameless cookies drop
    for value in ("__Host-ewsgate_rt=stolen; Path=/; Secure", "__host-EWSGATE_st=x",
                  "__Secure-ewsgate=1", "=orphan", "novalue", " =x"):
        assert space.namespaced(value, "/") is None, value


def test_only_this_sessions_cookies_reach_the_device_renamed_back() -> None:
    a, b = DeviceCookies(SID_A), DeviceCookies(SID_B)
    header = "; ".join([
        "__Host-ewsgate_rt=v1.relay.mac",                # the relay's own
        "evil=1",                                         # document.cookie for the parent domain
        f"{b.prefix}.sid=B",                              # another session's device cookie
        f"{a.prefix}.sid=A",
        f"{a.prefix}{b'/app'.hex()}.lang=app",
        f"{a.prefix}{b'/app/deep'.hex()}.lang=deep",
        f"{a.prefix}{b'/ap'.hex()}.no=1",                 # /ap does not path-match /app/x
        f"{a.prefix}zz.bad=1", f"{a.prefix}nodot", f"{a.prefix}.=x",  # malformed
        f"__host-dev.{a.tag}..case=1",                    # not the browser-enforced prefix
    ]).encode()
    assert a.for_device(header, b"/app/deep/page?q=1") == b"lang=deep; lang=app; sid=A"
    assert a.for_device(header, b"/") == b"sid=A"
    assert b.for_device(header, b"/") == b"sid=B"
    assert a.for_device(b"evil=1; __Host-ewsgate_rt=x", b"/") is None
    assert a.for_device(None, b"/") is None


@pytest.mark.parametrize("request_path,cookie_path,matches", [
    ("/", "/", True), ("/app", "/app", True), ("/app/x", "/app", True),
    ("/app/x", "/app/", True), ("/apple", "/app", False), ("/", "/app", False),
])
def test_path_match(request_path: str, cookie_path: str, matches: bool) -> None:
    assert path_matches(request_path, cookie_path) is matches


#: RFC 6265 cookie-name characters (an RFC 7230 token)
_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                          "!#$%&'*+-.^_`|~", min_size=1, max_size=20)
_PATH = st.lists(st.text(alphabet="abcxyz019-_.~", min_size=1, max_size=6), max_size=4).map(
    lambda parts: "/" + "/".join(parts))


@given(name=_TOKEN, value=st.text(alphabet="abcXYZ019-_.=", max_size=20), path=_PATH,
       extra=st.text(alphabet="abc", max_size=5))
def test_a_namespaced_cookie_comes_back_as_the_device_set_it(name: str, value: str, path: str,
                                                             extra: str) -> None:
    space = DeviceCookies(SID_A)
    set_cookie = space.namespaced(f"{name}={value}; Path={path}", "/")
    if name.lower().startswith(("__host-ewsgate", "__secure-ewsgate")):
        assert set_cookie is None
        return
    assert set_cookie is not None
    stored = set_cookie.split(";", 1)[0]  # what the browser sends back
    assert stored.startswith("__Host-")
    below = path.rstrip("/") + "/" + extra if extra else path
    assert space.for_device(stored.encode(), below.encode()) == f"{name}={value}".encode()
    assert DeviceCookies(SID_B).for_device(stored.encode(), below.encode()) is None


def _inject(pieces: list[bytes]) -> bytes:
    injector = HtmlShimInjector(b"<S>")
    return b"".join(injector.feed(p) for p in pieces) + injector.finish()


@pytest.mark.parametrize("pieces,expected", [
    ([b"<!DOCTYPE html><html><head>"], b"<!DOCTYPE html><S><html><head>"),
    ([b"\xef\xbb\xbf <!-- c -->\n<!doctype html>", b"<p>x"],
     b"\xef\xbb\xbf <!-- c -->\n<!doctype html><S><p>x"),
    ([b"  ", b"<!DOC", b"TYPE html PUBLIC \"x\">", b"<html>"],
     b"  <!DOCTYPE html PUBLIC \"x\"><S><html>"),
    ([b"<html><body>quirks</body></html>"], b"<S><html><body>quirks</body></html>"),
    ([b"<!-- open", b" comment --><html>"], b"<!-- open comment --><S><html>"),
    ([b""], b""), ([], b""),  # HEAD, 204, 304: nothing added to an empty body
    ([b"<!doctype html>"], b"<!doctype html><S>"),
])
def test_the_shim_goes_after_the_doctype_whatever_the_chunking(pieces: list[bytes],
                                                               expected: bytes) -> None:
    assert _inject(pieces) == expected


def test_the_shim_maps_document_cookie_onto_the_namespace() -> None:
    shim = DeviceCookies(SID_A).shim().decode()
    assert shim.startswith("<script>") and shim.endswith("</script>")
    assert f'"{DeviceCookies(SID_A).prefix}"' in shim
    assert "Path=/; Secure" in shim and "cookieStore" in shim


# -- over raw TLS: what a hostile device can plant, and what reaches the other session ------------

@pytest.mark.integration
async def test_cookies_of_session_a_never_reach_session_b_nor_shadow_the_relay(
        tmp_path: Path, portal: FakePortal) -> None:
    seen_a, seen_b = Seen(), Seen()
    planted = [
        ("Set-Cookie", "sid=A; Path=/; HttpOnly"),
        ("Set-Cookie", "wide=1; Domain=rt.localhost; Path=/"),
        ("Set-Cookie", "__Host-ewsgate_rt=stolen; Path=/; Secure"),
        ("Set-Cookie", f"__Host-dev.{DeviceCookies(SID_B).tag}..sid=forged; Path=/; Secure"),
    ]
    routes_a = {"/": lambda r, b: (200, [("Content-Type", "text/plain"), *planted], b"A"),
                "/next": lambda r, b: (200, [("Content-Type", "text/plain")], b"A2")}
    routes_b = {"/": lambda r, b: (200, [("Content-Type", "text/plain")], b"B")}
    async with RawServer(device_app(routes_a, seen_a)) as dev_a, \
            RawServer(device_app(routes_b, seen_b)) as dev_b, Relay(tmp_path, portal) as relay:
        sid_a = relay.add_device(dev_a.port, session_id=SID_A)
        sid_b = relay.add_device(dev_b.port, session_id=SID_B)
        cookie_a, cookie_b = await relay.login(sid_a), await relay.login(sid_b)
        first = await relay.fetch(sid_a, "GET", "/", cookie=cookie_a)
        set_cookies = first.all("set-cookie")
        assert all(c.startswith(DeviceCookies(SID_A).prefix) for c in set_cookies)
        assert not any("domain=" in c.lower() or "ewsgate_rt" in c for c in set_cookies)
        assert all("; Path=/; Secure" in c for c in set_cookies)
        # what the browser now holds for A (host-only), sent back to A's device renamed back
        held_a = "; ".join(c.split(";", 1)[0] for c in set_cookies)
        await relay.fetch(sid_a, "GET", "/next", cookie=f"{cookie_a}; {held_a}")
        sent_a = dict(seen_a.requests[-1][0].headers)[b"cookie"]
        assert sent_a.split(b"; ")[0] == b"sid=A" and b"ewsgate" not in sent_a
        # everything A's device or its scripts could make the browser send to B's host:
        # parent-domain cookies (document.cookie; domain=rt.localhost), A's cookies, the lot
        hostile = f"{cookie_b}; wide=1; evil=1; {held_a}; __Host-ewsgate_rt=stolen"
        response = await relay.fetch(sid_b, "GET", "/", cookie=hostile)
        assert response.status == 200 and response.body == b"B"  # the relay's cookie held
        assert b"cookie" not in dict(seen_b.requests[-1][0].headers)
        # a forged copy of the relay's cookie sent first (only script on B's own origin could
        # set one: the __Host- prefix keeps A's out) never passes: "not signed in", no request
        shadowed = await relay.fetch(sid_b, "GET", "/", cookie=f"__Host-ewsgate_rt=stolen; "
                                                               f"{cookie_b}")
        assert shadowed.status == 302 and len(seen_b.requests) == 1


@pytest.mark.integration
@pytest.mark.parametrize("dest,injected", [
    ("document", True), ("iframe", True), ("empty", False), ("script", False), (None, False)])
async def test_the_shim_is_put_only_into_navigated_html(
        tmp_path: Path, portal: FakePortal, dest: str | None, injected: bool) -> None:
    html = b"<!DOCTYPE html><html><head><script>document.cookie='a=1'</script></head></html>"
    routes = {"/": lambda r, b: (200, [("Content-Type", "text/html")], html)}
    async with RawServer(device_app(routes, Seen())) as device, \
            Relay(tmp_path, portal) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        headers = [("Sec-Fetch-Dest", dest)] if dest else []
        response = await relay.fetch(sid, "GET", "/", cookie=cookie, headers=headers)
        shim = DeviceCookies(sid).shim()
        if injected:
            assert response.body == html.replace(b"<html>", shim + b"<html>", 1)
        else:
            assert response.body == html
