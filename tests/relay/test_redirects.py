"""Navigation targets a device writes: Refresh and Link parsing, the policy, the meta guard."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ewsgate.relay.redirects import (
    MAX_TAG,
    REFUSED_PATH,
    MetaRefreshGuard,
    RedirectPolicy,
    link_targets,
    refresh_url,
)

POLICY = RedirectPolicy(session_name="s-aaaa.rt.example.com", session_port=443,
                        relay_domain="rt.example.com")


@pytest.mark.parametrize("value,expected", [
    ("5", (True, None)),
    ("5; url=/next", (True, "/next")),
    ("0;URL='http://10.0.0.7/'", (True, "http://10.0.0.7/")),
    ('0, url="/a"b', (True, "/a")),
    ("0 http://10.0.7/", (True, "http://10.0.7/")),
    ("0;url = /x", (True, "/x")),
    ("0;url /x", (True, "/x")),
    ("3.5;/y", (True, "/y")),
    (".5;/y", (True, "/y")),
    ("x;url=/z", (False, None)),
    ("0x;url=/z", (False, None)),
    ("", (False, None)),
])
def test_refresh_declarations_parse_as_html_says(value: str,
                                                 expected: tuple[bool, str | None]) -> None:
    assert refresh_url(value) == expected


def test_link_targets() -> None:
    assert link_targets('</a.css>; rel=preload, <http://10.0.0.7/x>; rel="preconnect"') == [
        "/a.css", "http://10.0.0.7/x"]


@pytest.mark.parametrize("url,refused", [
    ("/login", False),
    ("https://s-aaaa.rt.example.com/x", False),
    ("https://S-AAAA.rt.example.com./x", False),
    ("https://www.hp.com/support", False),
    ("http://s-aaaa.rt.example.com/x", True),
    ("https://s-aaaa.rt.example.com:8443/x", True),
    ("https://s-bbbb.rt.example.com/", True),
    ("https://rt.example.com/", True),
    ("http://0x0a.0.0.7/", True),
    ("http://10.0.7/", True),
    ("http://012.0.0.7/", True),
    ("http://10.0.0.7./", True),
    ("http://localhost./", True),
    ("http://admin.localhost/", True),
    ("http:10.0.0.7", True),
    ("/\\10.0.0.7/", True),
    ("http://[::1]:631/", True),
    ("http://printer/", True),
    ("http://10.0.0.256/", True),
])
def test_policy(url: str, refused: bool) -> None:
    assert (POLICY.refusal(url) is not None) is refused


def test_refresh_and_link_policy() -> None:
    assert POLICY.refresh_refusal("0; url=http://0x7f.1/") is not None
    assert POLICY.refresh_refusal("0; url=/ok") is None
    assert POLICY.refresh_refusal("garbage http://10.0.0.7/") is None  # ignored by browsers
    assert POLICY.link_refusal("</ok>; rel=preload, <//10.0.7/>; rel=preconnect") is not None


def _guard(body: bytes, pieces: list[int] | None = None) -> tuple[bytes, int]:
    guard = MetaRefreshGuard(POLICY.refusal)
    out = b""
    if pieces is None:
        out = guard.feed(body)
    else:
        at = 0
        for size in pieces:
            out += guard.feed(body[at:at + size])
            at += size
        out += guard.feed(body[at:])
    return out + guard.finish(), guard.refused_count


REFUSED_TAG = f'<meta http-equiv="refresh" content="0;url={REFUSED_PATH}">'.encode()


@pytest.mark.parametrize("tag", [
    b'<meta http-equiv="refresh" content="0;url=http://0x0a.0.0.7/">',
    b"<META HTTP-EQUIV=Refresh CONTENT='0; URL=http://10.0.7/'>",
    b"<meta/http-equiv=refresh content=0;url=//localhost./>",
    b'<meta content="0;url=http&#58;//10.0.0.7/" http-equiv="refresh">',
    b'<meta name=">" http-equiv=refresh content="0;url=http://012.0.0.7/">',
    b"<meta\nhttp-equiv='refresh'\ncontent='0;url=http:10.0.0.7'>",
])
def test_meta_refresh_to_internal_hosts_goes_to_the_refusal_page(tag: bytes) -> None:
    out, count = _guard(b"<html><head>" + tag + b"</head></html>")
    assert out == b"<html><head>" + REFUSED_TAG + b"</head></html>"
    assert count == 1


@pytest.mark.parametrize("tag", [
    b'<meta http-equiv="refresh" content="5;url=/status">',
    b'<meta http-equiv="refresh" content="30">',
    b'<meta charset="utf-8">',
    b'<meta http-equiv="refresh" http-equiv="x" content="0;url=/ok">',
    b'<meta http-equiv="content-type" content="0;url=http://10.0.0.7/">',
    b"<metadata>http-equiv=refresh content=0;url=http://10.0.0.7/</metadata>",
    b"<meta/http-equiv=refresh/content=0;url=//localhost./>",  # one unquoted value
])
def test_other_meta_tags_pass_unchanged(tag: bytes) -> None:
    body = b"<head>" + tag + b"</head>"
    assert _guard(body) == (body, 0)


def test_duplicate_attributes_keep_the_first_as_browsers_do() -> None:
    body = b'<meta http-equiv="refresh" content="0;url=http://10.0.0.7/" content="0;url=/ok">'
    assert _guard(body)[1] == 1


def test_an_overlong_meta_tag_is_disabled() -> None:
    body = (b"<meta http-equiv=refresh content='0;url=http://10.0.0.7/' data-x='"
            + b"a" * (MAX_TAG + 10) + b"'>")
    out, _ = _guard(body)
    assert out.startswith(b"<meta-disabled-by-relay ")
    assert b"<meta " not in out


@given(st.lists(st.integers(0, 40), max_size=12))
def test_the_guard_gives_the_same_output_however_the_body_is_split(pieces: list[int]) -> None:
    body = (b"<p>x</p><meta http-equiv=refresh content='0;url=http://10.0.7/'><meta charset=x>"
            b"<me<meta name=a><metax><meta http-equiv=refresh content='1;url=/ok'>tail<")
    assert _guard(body, pieces) == _guard(body)
