"""HP redirects and LEDM, absolute URLs everywhere, the remote panel WebSocket, the SNMP identity
and the ``ewsgate devicesim`` command."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import httpx
import pytest
from websockets.asyncio.client import connect

from .rawhttp import raw_exchange, split_response

pytestmark = pytest.mark.integration


# ---- hp ----------------------------------------------------------------------------------------

async def test_hp_http_redirects_to_absolute_https_with_port(device_factory) -> None:
    device = await device_factory("hp", https=True)
    async with httpx.AsyncClient() as client:
        get = await client.get(device.url("http", "/hp/device/EventLog/Index?x=1"))
        post = await client.post(device.url("http", "/hp/device/DeviceInformation/Index"),
                                 data={"location": "x"})
    assert get.status_code == 301
    assert get.headers["location"] == f"https://127.0.0.1:{device.https.port}" \
                                      "/hp/device/EventLog/Index?x=1"
    assert post.status_code == 302 and post.headers["location"].startswith("https://127.0.0.1:")


async def test_hp_advertised_host_is_what_the_redirect_names(device_factory) -> None:
    device = await device_factory("hp", https=True, advertised_host="10.20.30.40")
    async with httpx.AsyncClient() as client:
        response = await client.get(device.url("http", "/"))
    assert response.headers["location"] == f"https://10.20.30.40:{device.https.port}/"


async def test_hp_ledm_carries_serial_and_mac(device_factory) -> None:
    device = await device_factory("hp", https=True, serial="CNXYZ12345", mac="A0-D3-C1-00-00-07")
    async with httpx.AsyncClient(verify=False) as client:
        xml = (await client.get(device.url("https", "/DevMgmt/ProductConfigDyn.xml"))).text
    assert "<dd:SerialNumber>CNXYZ12345</dd:SerialNumber>" in xml
    assert "<prdcfgdyn:MacAddress>A0D3C1000007</prdcfgdyn:MacAddress>" in xml


# ---- absolute ----------------------------------------------------------------------------------

async def test_absolute_urls_in_location_html_css_js_json_and_cookies(device_factory) -> None:
    device = await device_factory("absolute", hostname="KMPRINTER")
    base = f"http://127.0.0.1:{device.http.port}"
    async with httpx.AsyncClient() as client:
        root = await client.get(device.url("http", "/"))
        assert root.status_code == 302 and root.headers["location"] == f"{base}/app/index.html"
        page = await client.get(root.headers["location"])
        css = (await client.get(f"{base}/app/style.css")).text
        js = (await client.get(f"{base}/app/app.js")).text
        status = (await client.get(f"{base}/app/api/status.json")).json()
        printed = (await client.get(f"{base}/app/print.css")).text
        logo = await client.get(f"{base}/app/logo.svg")
    assert f'href="{base}/app/style.css"' in page.text and f'src="{base}/app/app.js"' in page.text
    assert 'href="http://KMPRINTER/app/index.html"' in page.text
    assert f"url({base}/app/bg.svg)" in css and f'@import url("{base}/app/print.css")' in css
    assert f'"ws://127.0.0.1:{device.http.port}"' in js and "new WebSocket(" in js
    assert status["self"] == f"{base}/app/api/status.json"
    assert status["panel"] == f"ws://127.0.0.1:{device.http.port}/app/ws/status"
    assert f"{base}/app/logo.svg" in printed and logo.headers["content-type"] == "image/svg+xml"
    cookies = page.headers.get_list("set-cookie")
    assert any("Domain=127.0.0.1; Path=/app" in cookie for cookie in cookies)


async def test_absolute_gzip_page_hides_absolute_urls_inside_compression(device_factory) -> None:
    device = await device_factory("absolute")
    raw = await raw_exchange(device.http.port, b"GET /app/gz.html HTTP/1.1\r\nHost: p\r\n"
                             b"Accept-Encoding: gzip\r\nConnection: close\r\n\r\n")
    _, headers, body = split_response(raw)
    assert headers["content-encoding"] == "gzip"
    assert b"http://127.0.0.1" not in body  # only visible once decompressed
    async with httpx.AsyncClient() as client:
        page = await client.get(device.url("http", "/app/gz.html"))
    assert f'id="gz-link" href="http://127.0.0.1:{device.http.port}/app/settings.html"' \
        in page.text


async def test_absolute_status_websocket_streams(device_factory) -> None:
    device = await device_factory("absolute")
    async with connect(f"ws://127.0.0.1:{device.http.port}/app/ws/status",
                       open_timeout=10) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        second = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert first["status"] == "Ready" and second["seq"] == first["seq"] + 1


# ---- panel -------------------------------------------------------------------------------------

async def test_panel_streams_frames_and_key_presses_change_the_display(device_factory) -> None:
    device = await device_factory("panel")
    async with connect(f"ws://127.0.0.1:{device.http.port}/panel/ws", open_timeout=10) as ws:
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(4)]
        assert all(frame["type"] == "panel" and len(frame["lines"]) == 4 for frame in frames)
        assert [f["seq"] for f in frames] == sorted({f["seq"] for f in frames})
        assert len({f["leds"]["data"] for f in frames}) == 2  # the data LED blinks
        assert frames[-1]["lines"][0].strip() == "Ready"
        for key in ("menu", "down", "down"):
            await ws.send(json.dumps({"key": key}))
        await ws.send("ok")  # a bare key name works too
        for _ in range(20):
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if frame["screen"] == "submenu":
                break
        assert frame["lines"][0].strip() == "NETWORK"
        assert "127.0.0.1" in frame["lines"][1]
        await ws.send(json.dumps({"key": "reboot"}))
        for _ in range(20):
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if message["type"] == "error":
                break
        assert message["code"] == "devicesim.panel_unknown_key"


async def test_panel_pages_build_the_websocket_url_from_host_or_device_ip(device_factory) -> None:
    device = await device_factory("panel")
    async with httpx.AsyncClient() as client:
        relative = (await client.get(device.url("http", "/panel/"))).text
        absolute = (await client.get(device.url("http", "/panel/absolute.html"))).text
        plain = await client.get(device.url("http", "/panel/ws"))
    assert "location.host + '/panel/ws'" in relative
    assert f'"ws://127.0.0.1:{device.http.port}/panel/ws"' in absolute
    assert plain.status_code == 426


# ---- SNMP identity and the command -------------------------------------------------------------

@pytest.mark.skipif(shutil.which("snmpget") is None, reason="net-snmp tools are not installed")
async def test_snmp_serves_the_same_serial_and_mac(device_factory) -> None:
    from ewsgate.config import HostPort

    device = await device_factory("brother", serial="E7TEST0001", mac="30:05:5c:aa:bb:cc",
                                  snmp=HostPort("127.0.0.1", 0))
    proc = await asyncio.create_subprocess_exec(
        "snmpget", "-v2c", "-c", "public", "-t", "3", "-r", "1", "-Oqv",
        f"udp:127.0.0.1:{device.snmp.port}", "1.3.6.1.2.1.43.5.1.1.17.1",
        "1.3.6.1.2.1.2.2.1.6.2", "1.3.6.1.2.1.25.3.2.1.3.1", "1.3.6.1.2.1.1.5.0",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    serial, mac, model, name = [line.strip().strip('"').strip() for line in
                                out.decode().splitlines()]
    assert serial == "E7TEST0001", err
    assert mac == "30 05 5C AA BB CC"
    assert model == device.profile.info.model and name == device.config.hostname == "BRNAABBCC"


async def test_devicesim_command_prints_addresses_and_stops_on_sigterm(tmp_path) -> None:
    env = {**os.environ, "EWSGATE_ADVERTISED_HOST": "127.0.0.1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ewsgate", "devicesim", "--profile", "hp",
        "--http", "127.0.0.1:0", "--https", "127.0.0.1:0", "--serial", "CLI0001",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        lines = []
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert line, "devicesim exited before it was ready"
            lines.append(line)
            if line.strip() == "ready":
                break
        text = "".join(lines)
        http_url = re.search(r"http\s+(http://\S+)", text).group(1)
        https_url = re.search(r"https\s+(https://\S+)", text).group(1)
        async with httpx.AsyncClient(verify=False) as client:
            redirect = await client.get(http_url + "DevMgmt/ProductConfigDyn.xml")
            assert redirect.headers["location"] == https_url + "DevMgmt/ProductConfigDyn.xml"
            xml = await client.get(redirect.headers["location"])
        assert "CLI0001" in xml.text
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_devicesim_command_rejects_a_bad_profile() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ewsgate", "devicesim", "--profile", "nope",
        "--http", "127.0.0.1:0", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"unknown profile 'nope'" in err and b"devicesim.unknown_profile" in err
