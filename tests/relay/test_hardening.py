"""The cross-site rules and header hardening, as pure functions."""

from __future__ import annotations

import pytest

from ewsgate.relay.hardening import HSTS, check_request_site, harden_response_headers

ORIGIN = "https://s-aaaa.rt.example.com"


@pytest.mark.parametrize("method,headers,websocket,refused", [
    (b"GET", [], False, False),
    (b"POST", [], False, False),  # no browser headers at all: SameSite cookie + no Origin
    (b"POST", [(b"origin", ORIGIN.encode())], False, False),
    (b"POST", [(b"origin", b"https://evil.example")], False, True),
    (b"POST", [(b"sec-fetch-site", b"same-origin")], False, False),
    (b"POST", [(b"sec-fetch-site", b"same-site")], False, True),
    (b"POST", [(b"sec-fetch-site", b"cross-site"), (b"sec-fetch-mode", b"navigate")], False,
     True),
    (b"GET", [(b"sec-fetch-site", b"cross-site"), (b"sec-fetch-mode", b"navigate"),
              (b"sec-fetch-dest", b"document")], False, False),
    (b"GET", [(b"sec-fetch-site", b"cross-site"), (b"sec-fetch-mode", b"navigate"),
              (b"sec-fetch-dest", b"iframe")], False, True),
    (b"GET", [(b"sec-fetch-site", b"cross-site"), (b"sec-fetch-mode", b"no-cors")], False,
     True),
    (b"GET", [(b"sec-fetch-site", b"none")], False, False),
    (b"GET", [(b"origin", ORIGIN.encode())], True, False),
    (b"GET", [], True, True),
    (b"GET", [(b"origin", b"https://s-bbbb.rt.example.com")], True, True),
    (b"GET", [(b"service-worker", b"script"), (b"sec-fetch-site", b"same-origin")], False, True),
])
def test_request_site_rules(method: bytes, headers: list[tuple[bytes, bytes]], websocket: bool,
                            refused: bool) -> None:
    result = check_request_site(method, headers, ORIGIN, websocket=websocket)
    assert (result is not None) == refused
    if result is not None:
        assert result.code and result.message


def test_device_headers_are_dropped_and_ours_added() -> None:
    device = [(b"Access-Control-Allow-Origin", b"*"), (b"access-control-allow-methods", b"PUT"),
              (b"Content-Security-Policy", b"default-src *"),
              (b"Content-Security-Policy-Report-Only", b"x"), (b"Service-Worker-Allowed", b"/"),
              (b"Strict-Transport-Security", b"max-age=1"), (b"Content-Type", b"text/html"),
              (b"Set-Cookie", b"a=1")]
    out = harden_response_headers(device, "s-aaaa.rt.example.com")
    names = [n.lower() for n, _ in out]
    assert b"content-type" in names and b"set-cookie" in names
    assert names.count(b"content-security-policy") == 1
    assert not any(n.startswith(b"access-control") for n in names)
    assert b"service-worker-allowed" not in names
    # the device's HSTS never passes; the only one is the relay's own (issue 10, item 7)
    assert (b"Strict-Transport-Security", b"max-age=1") not in out
    assert names.count(b"strict-transport-security") == 1
    assert dict(out)[b"Strict-Transport-Security"] == HSTS
    csp = dict(out)[b"Content-Security-Policy"].decode()
    for directive in ("default-src 'self'", "connect-src 'self' wss://s-aaaa.rt.example.com",
                      "form-action 'self'", "frame-ancestors 'self'", "base-uri 'self'",
                      "object-src 'none'", "worker-src 'none'"):
        assert directive in csp
