"""Login flows as a browser drives them: Brother form, Ricoh base64 + frames, Sharp HTTP auth,
Konica single admin session."""

from __future__ import annotations

import base64
import re

import httpx
import pytest

from ewsgate.devicesim.profiles.brother import PASSWORD as BROTHER_PASSWORD
from ewsgate.devicesim.profiles.konica import ADMIN_PASSWORD, KEEPALIVE, REFUSED
from ewsgate.devicesim.profiles.ricoh import MAX_TARGET
from ewsgate.devicesim.tls import legacy_client_context

pytestmark = pytest.mark.integration


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden {name} in page"
    return match.group(1)


# ---- brother -----------------------------------------------------------------------------------

async def test_brother_http_redirects_to_legacy_https(device_factory) -> None:
    device = await device_factory("brother", https=True)
    async with httpx.AsyncClient() as client:
        response = await client.get(device.url("http", "/general/status.html"))
    assert response.status_code == 301
    assert response.headers["location"] == device.url("https", "/general/status.html")


async def test_brother_login_with_per_boot_field_csrf_and_301(device_factory) -> None:
    device = await device_factory("brother", https=True)
    async with httpx.AsyncClient(verify=legacy_client_context(),
                                 base_url=device.url("https", "")) as client:
        page = (await client.get("/general/status.html")).text
        field = re.search(r'type="password" id="LogBox" name="([^"]+)"', page).group(1)
        assert re.fullmatch(r"B[0-9a-f]{3}", field) and field == device.profile.password_field
        form = {"loginurl": "/general/contact.html", "CSRFToken": hidden(page, "CSRFToken")}

        wrong = await client.post("/general/status.html", data={**form, field: "nope"})
        assert wrong.status_code == 200 and "Login Error" in wrong.text
        assert "AuthCookie" not in wrong.headers.get("set-cookie", "")
        stale_name = await client.post("/general/status.html",
                                       data={**form, "password": BROTHER_PASSWORD})
        assert "Login Error" in stale_name.text  # a hard-coded field name does not work

        ok = await client.post("/general/status.html", data={**form, field: BROTHER_PASSWORD})
        assert ok.status_code == 301 and ok.headers["location"] == "/general/contact.html"
        assert "AuthCookie=" in ok.headers["set-cookie"]

        settings = await client.get("/general/contact.html")
        token = hidden(settings.text, "CSRFToken")
        refused = await client.post("/general/contact.html", data={"location": "Lab"})
        assert refused.status_code == 403 and "CSRF" in refused.text
        saved = await client.post("/general/contact.html",
                                  data={"location": "Lab", "CSRFToken": token})
        assert saved.status_code == 301
        after = await client.get(saved.headers["location"])
        assert 'value="Lab"' in after.text and "Settings saved." in after.text

        no_token = await client.post("/admin/firmware_upload.html",
                                     files={"firmware": ("fw.bin", b"x" * 1000)})
        assert no_token.status_code == 403 and "CSRFToken" in no_token.text


async def test_brother_admin_pages_need_the_auth_cookie(device_factory) -> None:
    device = await device_factory("brother")
    async with httpx.AsyncClient() as client:
        page = await client.get(device.url("http", "/general/contact.html"))
    assert page.status_code == 200 and 'id="LogBox"' in page.text
    assert 'name="loginurl" value="/general/contact.html"' in page.text
    assert "settings-form" not in page.text


# ---- ricoh -------------------------------------------------------------------------------------

async def test_ricoh_javascript_jump_frames_cookie_check_and_base64_login(device_factory) -> None:
    device = await device_factory("ricoh")
    guest = "/web/guest/en/websys/webArch"
    async with httpx.AsyncClient(base_url=device.url("http", "")) as client:
        root = await client.get("/")
        assert f"location.href = '{guest}/mainFrame.cgi'" in root.text
        assert client.cookies.get("wimsesid") == "--" and client.cookies.get("risessionid")
        frames = await client.get(f"{guest}/mainFrame.cgi")
        assert "<frameset" in frames.text and f'src="{guest}/menu.cgi"' in frames.text
        assert "cookieOnOffChecker=on" in frames.text
        assert (await client.get(f"{guest}/authForm.cgi")).text.count("Cookies are disabled")

        client.cookies.set("cookieOnOffChecker", "on")
        form = await client.get(f"{guest}/authForm.cgi")
        token = hidden(form.text, "wimToken")
        assert "btoa(" in form.text

        def login(user: str, password: str, wim: str):
            return client.post(f"{guest}/login.cgi", data={
                "wimToken": wim, "userid": base64.b64encode(user.encode()).decode(),
                "password": base64.b64encode(password.encode()).decode(), "open": ""})

        bad = await login("admin", "wrong", token)
        assert "Authentication has failed" in bad.text
        token = hidden((await client.get(f"{guest}/authForm.cgi")).text, "wimToken")
        ok = await login("admin", "", token)
        assert ok.status_code == 302
        assert ok.headers["location"] == "/web/entry/en/websys/webArch/mainFrame.cgi"
        assert re.fullmatch(r"[0-9a-f]{32}", client.cookies.get("wimsesid"))
        replay = await login("admin", "", token)
        assert "timed out" in replay.text  # a wimToken is good once

        conf = "/web/entry/en/websys/config/deviceInfo.cgi"
        saved = await client.post(conf, data={"device_name": "RICOH-3F"})
        assert 'value="RICOH-3F"' in saved.text
        await client.get("/web/entry/en/websys/webArch/logout.cgi")
        after = await client.get(conf)
        assert after.status_code == 302 and after.headers["location"].endswith("mainFrame.cgi")


async def test_ricoh_refuses_request_targets_over_1024_bytes(device_factory) -> None:
    device = await device_factory("ricoh")
    base = "/web/guest/en/websys/webArch/topPage.cgi?pad="
    async with httpx.AsyncClient() as client:
        at_limit = await client.get(device.url("http", base + "x" * (MAX_TARGET - len(base))))
        over = await client.get(device.url("http", base + "x" * (MAX_TARGET - len(base) + 1)))
    assert at_limit.status_code == 200
    assert over.status_code == 414 and over.headers["server"] == "Web-Server/3.0"


# ---- sharp -------------------------------------------------------------------------------------

async def test_sharp_offers_digest_sha256_md5_and_basic(device_factory) -> None:
    device = await device_factory("sharp")
    async with httpx.AsyncClient() as client:
        response = await client.get(device.url("http", "/admin/settings.html"))
        user = await client.get(device.url("http", "/user/jobs.html"))
    challenges = response.headers.get_list("www-authenticate")
    assert response.status_code == 401 and len(challenges) == 3
    assert "algorithm=SHA-256" in challenges[0] and 'qop="auth"' in challenges[0]
    assert "algorithm=MD5" in challenges[1] and challenges[2].startswith("Basic ")
    assert user.headers.get_list("www-authenticate") == ['Basic realm="user", charset="UTF-8"']


async def test_sharp_digest_and_basic_logins_and_settings(device_factory) -> None:
    device = await device_factory("sharp")
    url = device.url("http", "/admin/settings.html")
    async with httpx.AsyncClient(auth=httpx.DigestAuth("admin", "admin")) as client:
        page = await client.get(url)
        assert page.status_code == 200 and "settings-form" in page.text
        # httpx would copy the POST's Authorization into the redirect (stale uri and nc, which
        # the device rightly refuses); a browser recomputes it, so follow by hand
        saved = await client.post(url, data={"contact": "Sam"})
        assert saved.status_code == 303
        after = await client.get(device.url("http", saved.headers["location"]))
        assert after.status_code == 200 and 'value="Sam"' in after.text
    async with httpx.AsyncClient(auth=httpx.DigestAuth("admin", "wrong")) as client:
        assert (await client.get(url)).status_code == 401
    async with httpx.AsyncClient() as client:
        basic = await client.get(url, auth=("admin", "admin"))
        user_page = await client.get(device.url("http", "/user/jobs.html"), auth=("user", "users"))
        root = await client.get(device.url("http", "/"))
    assert basic.status_code == 200 and user_page.status_code == 200
    assert '<frame src="/menu.html"' in root.text


# ---- konica ------------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_800_000_000.0 + self.now


async def test_konica_second_admin_is_refused_until_logout(device_factory) -> None:
    device = await device_factory("konica")
    url = device.url("http", "")
    async with httpx.AsyncClient(base_url=url) as first, httpx.AsyncClient(base_url=url) as second:
        ok = await first.post("/wcd/login.cgi", data={"password": ADMIN_PASSWORD})
        assert ok.status_code == 302 and first.cookies.get("ID")
        assert (await first.get("/wcd/admin/system.html")).status_code == 200
        refused = await second.post("/wcd/login.cgi", data={"password": ADMIN_PASSWORD})
        assert REFUSED in refused.text and not second.cookies.get("ID")
        assert "locked" in (await second.get("/wcd/index.html")).text
        again = await first.post("/wcd/login.cgi", data={"password": ADMIN_PASSWORD})
        assert again.status_code == 302  # the holder may log in again
        await first.get("/wcd/logout.cgi")
        assert (await first.get("/wcd/admin/system.html")).status_code == 302
        taken = await second.post("/wcd/login.cgi", data={"password": ADMIN_PASSWORD})
        assert taken.status_code == 302


async def test_konica_admin_auto_logout_after_idle_time(device_factory) -> None:
    clock = FakeClock()
    device = await device_factory("konica", clock=clock, admin_idle_seconds=600)
    url = device.url("http", "")
    async with httpx.AsyncClient(base_url=url) as first, httpx.AsyncClient(base_url=url) as second:

        async def browser_open_for(seconds: int) -> None:
            """The admin page's script polls every 10 s; polls are not activity."""
            for _ in range(seconds // 10):
                clock.now += 10
                assert (await first.get(KEEPALIVE)).status_code == 204

        await first.post("/wcd/login.cgi", data={"password": ADMIN_PASSWORD})
        await browser_open_for(590)
        assert (await first.get("/wcd/admin/system.html")).status_code == 200  # activity
        await browser_open_for(590)
        assert REFUSED in (await second.post("/wcd/login.cgi",
                                             data={"password": ADMIN_PASSWORD})).text
        clock.now += 11  # 601 s since the last page view; the last poll was 11 s ago
        expired = await first.get("/wcd/admin/system.html")
        assert expired.status_code == 302 and "timeout=1" in expired.headers["location"]
        ok = await second.post("/wcd/login.cgi", data={"password": ADMIN_PASSWORD})
        assert ok.status_code == 302
    assert any("automatically logged out" in e.text for e in device.context.state.events)


async def test_konica_lock_is_released_70s_after_the_browser_vanished(device_factory) -> None:
    clock = FakeClock()
    device = await device_factory("konica", clock=clock)
    url = device.url("http", "")
    async with httpx.AsyncClient(base_url=url) as first, httpx.AsyncClient(base_url=url) as second:
        await first.post("/wcd/login.cgi", data={"password": ADMIN_PASSWORD})
        page = await first.get("/wcd/admin/system.html")
        assert f"fetch('{KEEPALIVE}'" in page.text
        clock.now += 69  # the browser was closed without Logout: no more polls
        assert REFUSED in (await second.post("/wcd/login.cgi",
                                             data={"password": ADMIN_PASSWORD})).text
        clock.now += 2
        taken = await second.post("/wcd/login.cgi", data={"password": ADMIN_PASSWORD})
        assert taken.status_code == 302
    assert any("browser gone" in e.text for e in device.context.state.events)
