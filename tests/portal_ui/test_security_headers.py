"""Security-headers middleware: every response gets the strict policy; HSTS on HTTPS only."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ewsgate.portal.security_headers import (
    DEFAULT_CSP,
    SecurityHeadersConfig,
    SecurityHeadersMiddleware,
)


async def _plain(request):
    return PlainTextResponse("hello")


async def _own_csp(request):
    return PlainTextResponse("x", headers={"Content-Security-Policy": "default-src 'none'"})


def _client(base_url: str, config: SecurityHeadersConfig | None = None) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/", _plain), Route("/own", _own_csp)])
    wrapped = SecurityHeadersMiddleware(app, config)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url=base_url)


async def test_plain_http_response_gets_every_header_but_hsts():
    async with _client("http://portal.test") as client:
        response = await client.get("/")
    assert response.text == "hello"
    csp = response.headers["content-security-policy"]
    assert csp == DEFAULT_CSP
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    assert "strict-transport-security" not in response.headers


async def test_https_response_gets_hsts():
    async with _client("https://portal.test") as client:
        response = await client.get("/")
    assert response.headers["strict-transport-security"] == "max-age=63072000"


async def test_route_that_sets_its_own_csp_keeps_it_and_gets_the_rest():
    async with _client("http://portal.test") as client:
        response = await client.get("/own")
    assert response.headers.get_list("content-security-policy") == ["default-src 'none'"]
    assert response.headers["x-frame-options"] == "DENY"


async def test_not_found_responses_are_covered_too():
    async with _client("http://portal.test") as client:
        response = await client.get("/nowhere")
    assert response.status_code == 404
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_config_refuses_a_policy_without_frame_ancestors():
    with pytest.raises(ValueError, match="frame-ancestors"):
        SecurityHeadersConfig(content_security_policy="default-src 'self'")
    with pytest.raises(ValueError, match="hsts_max_age"):
        SecurityHeadersConfig(hsts_max_age=-1)
