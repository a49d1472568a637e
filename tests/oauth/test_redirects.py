"""Post-login redirects stay on the portal; redirect URIs match by exact string comparison."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ewsgate.portal.oauth.redirects import (
    check_registrable_redirect_uri,
    redirect_uri_matches,
    safe_next_path,
)

REGISTERED = "https://s-abc.rt.localhost:8443/.ewsgate/callback"


@pytest.mark.parametrize(
    "path",
    ["/", "/devices/3", "/oauth/authorize?client_id=1&state=x%2F%2F", "/jobs?x=https://a.b"],
)
def test_same_origin_paths_are_kept(path: str) -> None:
    assert safe_next_path(path) == path


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/ /evil.example",
        "/\n/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "http:/evil.example",
        "/%0a/x\x7f",
        "/" + "a" * 3000,
    ],
)
def test_anything_else_falls_back_to_root(target: str | None) -> None:
    assert safe_next_path(target) == "/"


@given(st.text(max_size=300))
def test_safe_next_path_always_returns_a_single_slash_path(text: str) -> None:
    result = safe_next_path(text)
    assert result.startswith("/") and not result.startswith("//")
    assert "\\" not in result and not any(ch.isspace() for ch in result)


def test_exact_redirect_uri_matches() -> None:
    assert redirect_uri_matches(REGISTERED, REGISTERED)


@pytest.mark.parametrize(
    "requested",
    [
        None,
        "https://s-abc.rt.localhost:8443/.ewsgate/callbacK",  # one char off
        "https://s-abc.rt.localhost:8443/.ewsgate/callback/",  # extra slash
        "https://s-abc.rt.localhost:8444/.ewsgate/callback",  # different port
        "https://s-abc.rt.localhost/.ewsgate/callback",  # port dropped
        "https://S-ABC.rt.localhost:8443/.ewsgate/callback",  # case (no normalisation)
        "https://s-abc.rt.localhost:8443/.ewsgate/callback?x=1",
        "https://s-abc.rt.localhost:8443/.ewsgate/%63allback",
        "http://s-abc.rt.localhost:8443/.ewsgate/callback",
    ],
)
def test_any_difference_does_not_match(requested: str | None) -> None:
    assert not redirect_uri_matches(requested, REGISTERED)


@pytest.mark.parametrize(
    "uri",
    ["http://s-a.rt.localhost/cb", "/relative", "https://s-a.rt.localhost/cb#frag",
     "https://user:pw@s-a.rt.localhost/cb", "https:///cb"],
)
def test_unregistrable_redirect_uris_are_refused(uri: str) -> None:
    with pytest.raises(ValueError):
        check_registrable_redirect_uri(uri)


def test_session_redirect_uri_is_registrable() -> None:
    assert check_registrable_redirect_uri(REGISTERED) == REGISTERED
