"""Pure pieces: addresses and URLs the device writes, config validation, routing, cookies and
the generated log, without sockets."""

from __future__ import annotations

import pytest

from ewsgate.devicesim.profiles.base import large_log
from ewsgate.devicesim.state import (
    DeviceConfig,
    DeviceContext,
    DeviceState,
    SystemClock,
    format_host,
    normalise_mac,
)
from ewsgate.devicesim.web import Request, Router, parse_cookies, text_response


def config(**overrides: object) -> DeviceConfig:
    values: dict[str, object] = {"profile": "hp", "serial": "CN1", "mac": "a0:d3:c1:4a:2b:3c",
                                 "advertised_host": "10.0.0.5", "hostname": "NPI4A2B3C"}
    values.update(overrides)
    return DeviceConfig(**values)  # type: ignore[arg-type]


class EmptyBody:
    def __aiter__(self):
        return self._gen()

    async def _gen(self):
        return
        yield b""

    async def read(self, limit: int = 0) -> bytes:
        return b""


def request(method: str, target: str, headers: list[tuple[str, str]] | None = None) -> Request:
    return Request(method=method, target=target, headers=headers or [], http_version="1.1",
                   scheme="http", body=EmptyBody())


@pytest.mark.parametrize("text", ["A0-D3-C1-4A-2B-3C", "a0d3c14a2b3c", " a0:d3:c1:4a:2b:3c "])
def test_mac_forms_are_normalised(text: str) -> None:
    assert normalise_mac(text) == "a0:d3:c1:4a:2b:3c"


@pytest.mark.parametrize("text", ["a0:d3:c1:4a:2b", "zz:d3:c1:4a:2b:3c", ""])
def test_bad_macs_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="a0:d3:c1:4a:2b:3c"):
        normalise_mac(text)


def test_urls_omit_default_ports_and_bracket_ipv6() -> None:
    assert format_host("10.0.0.5", 80, 80) == "10.0.0.5"
    assert format_host("::1", 8443, 443) == "[::1]:8443"
    ctx = DeviceContext(config(), SystemClock(), DeviceState(), http_port=8080, https_port=443)
    assert ctx.base_url("http") == "http://10.0.0.5:8080"
    assert ctx.base_url("https") == "https://10.0.0.5"
    assert ctx.ws_url("https") == "wss://10.0.0.5"
    only_https = DeviceContext(config(), SystemClock(), DeviceState(), https_port=8443)
    assert only_https.base_url("http") == "https://10.0.0.5:8443"


@pytest.mark.parametrize("bad", [{"serial": ""}, {"mac": "A0:D3:C1:4A:2B:3C"},
                                 {"slow_seconds": -1}, {"admin_idle_seconds": 0}])
def test_config_is_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        config(**bad)


async def test_router_404_405_and_head() -> None:
    router = Router()

    async def page(req: Request):
        return text_response("ok")

    router.add("/a", page)
    router.add("/b", page, ("POST",))
    assert (await router.dispatch(request("GET", "/a?x=1"))).status == 200
    assert (await router.dispatch(request("HEAD", "/a"))).status == 200
    assert (await router.dispatch(request("GET", "/missing"))).status == 404
    refused = await router.dispatch(request("GET", "/b"))
    assert refused.status == 405 and ("Allow", "POST") in refused.headers


def test_request_parses_query_and_cookies() -> None:
    req = request("GET", "/p?a=1&a=2&b=", [("cookie", "x=1; y=\"2\""), ("cookie", "x=9; z=3")])
    assert req.path == "/p" and req.arg("a") == "1" and req.arg("b") == ""
    assert req.arg("c", "d") == "d"
    assert req.cookies == {"x": "1", "y": "2", "z": "3"}
    assert parse_cookies(["broken; =v; k=v"]) == {"k": "v"}


async def test_large_log_has_exact_size_and_whole_numbered_lines() -> None:
    chunks = [chunk async for chunk in large_log(200_050, serial="SN1")]
    data = b"".join(chunks)
    assert len(data) == 200_050
    lines = data.split(b"\n")
    assert all(len(line) == 99 for line in lines[:-1]) and b"serial=SN1" in lines[0]
    assert lines[0].startswith(b"0000000000.000") and lines[655].startswith(b"0000000001.000")
    assert [chunk async for chunk in large_log(0, serial="x")] == []
