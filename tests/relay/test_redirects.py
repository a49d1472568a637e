"""Navigation targets a device writes: Refresh and Link parsing, the policy, the meta guard."""

from __future__ import annotations

from html.parser import HTMLParser

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


class _MetaTags(HTMLParser):
    """An independent tokenizer (the standard library's) collecting every <meta>'s attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.metas: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            found: dict[str, str] = {}
            for name, value in attrs:
                found.setdefault(name, value or "")
            self.metas.append(found)

    handle_startendtag = handle_starttag


_URLS = st.sampled_from(["http://0x0a.0.0.7/", "http://10.0.7/", "//localhost./", "/ok",
                         "http:10.0.0.7", "https://www.example.com/", "http&#58;//10.0.0.7/",
                         "HTTP://127.1/", "https://s-bbbb.rt.example.com/"])


@st.composite
def _meta_tags(draw: st.DrawFn) -> bytes:
    url = draw(_URLS)
    content = draw(st.sampled_from(["0;url={}", "0; URL={}", "5 , url = {}", "0;{}", "1;url='{}'"]))
    content = content.format(url)
    quote = draw(st.sampled_from(['"', "'", ""]))
    if not quote and (" " in content or "'" in content):
        quote = '"'
    if quote and quote in content:
        quote = '"' if quote == "'" else "'"
    equiv = draw(st.sampled_from(["refresh", "Refresh", "REFRESH"]))
    attrs = [f"{draw(st.sampled_from(['http-equiv', 'HTTP-EQUIV']))}={equiv}",
             f"content={quote}{content}{quote}"]
    if draw(st.booleans()):
        attrs.reverse()
    if draw(st.booleans()):
        attrs.insert(draw(st.integers(0, len(attrs))), 'name="x>y"')
    gap = draw(st.sampled_from([" ", "\n", "\t", "  "]))
    return (f"<{draw(st.sampled_from(['meta', 'META', 'Meta']))}{gap}"
            f"{gap.join(attrs)}{draw(st.sampled_from(['>', '/>', ' >']))}").encode()


@given(st.lists(_meta_tags(), min_size=1, max_size=4), st.lists(st.integers(1, 30), max_size=8))
def test_no_refused_refresh_survives_by_another_tokenizer(tags: list[bytes],
                                                         pieces: list[int]) -> None:
    body = b"<html><head>" + b"<p>text</p>".join(tags) + b"</head><body>x</body></html>"
    out, _ = _guard(body, pieces)
    parser = _MetaTags()
    parser.feed(out.decode("latin-1"))
    parser.close()
    assert len(parser.metas) == len(tags)
    for meta in parser.metas:
        if meta.get("http-equiv", "").lower() == "refresh":
            valid, url = refresh_url(meta.get("content", ""))
            assert not (valid and url is not None and POLICY.refusal(url) is not None), meta
