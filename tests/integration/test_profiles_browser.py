"""Every simulated printer profile through Remote Technician, in Chromium.

One Chromium (Debian's, through Playwright) for the module, over the one shared ``demo`` stack
(portal, relay, enrolled agent, one simulated printer per profile, all real processes). For each
profile the technician signs in to the portal UI, opens the device page, clicks *Open device
web page*, follows the tab the UI opens when the session is ready through OAuth to the device,
does the profile's own path (``profile_steps.STEPS``: its login, a setting that persists after a
reload, its redirects and absolute links, the remote panel, a 50 MB firmware upload whose
SHA-256 the device reports), ends the session with the progress page's *End* and finds those
requests in the job's Remote Technician Log. Every request and WebSocket the session tab makes
must go to the session origin (the one hop to the portal's OAuth ``/oauth/authorize`` aside).

Time to first page (click → the device's first page rendered) is printed and written to
``build/test-artifacts/time-to-first-page.json``; ``bench/time_to_first_page.py`` turns it into
the table in ``docs/performance.md``. Screenshots of every step go to
``build/test-artifacts/profiles/<profile>/``.

Negatives in the browser: the configurer (no User role) sees the switch but no *Open* button,
the technician sees no switch, and a session of the ``short_demo`` stack (6 seconds) shows the
relay's *ended* page after expiry.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from ewsgate.demo import DEMO_PROFILES, DemoInfo

from .conftest import sign_in
from .profile_steps import LANDING, STEPS, Firmware, SessionTab, log_paths

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
FIRMWARE_BYTES = 50 * 1024 * 1024
SESSION_ORIGIN = re.compile(r"^(https|wss)://s-[a-z2-7]{32}\.rt\.localhost:\d+$")
TTFP_FILE = "time-to-first-page.json"

_timings: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def browser(artifacts_dir: Path) -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    if _timings:
        _write_timings(artifacts_dir / TTFP_FILE)


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> Firmware:
    return Firmware.create(tmp_path_factory.mktemp("firmware") / "firmware-50mb.bin",
                           FIRMWARE_BYTES)


def _write_timings(path: Path) -> None:
    """Merge this run's figures into the JSON (a run of one profile keeps the others)."""
    try:
        known = json.loads(path.read_text())["profiles"]
    except (OSError, ValueError, KeyError):
        known = {}
    known.update(_timings)
    path.write_text(json.dumps({
        "what": "click on 'Open device web page' -> the device's first page rendered in "
                "Chromium (session start, identity check, tunnel, OAuth, first page)",
        "unit": "seconds",
        "profiles": dict(sorted(known.items())),
    }, indent=2) + "\n")


def _context(browser: Browser, **kwargs: Any) -> BrowserContext:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280,
                                                                      "height": 900}, **kwargs)
    context.set_default_timeout(30_000)
    return context


def _portal_sign_in(page: Page, info: DemoInfo, login: str) -> None:
    page.goto(info.portal_url + "/login")
    page.fill("input[name=email]", info.logins[login]["email"])
    page.fill("input[name=password]", info.logins[login]["password"])
    page.click("button[type=submit]")
    page.wait_for_url("**/devices**")


def _open_session(context: BrowserContext, info: DemoInfo, profile: str,
                  shots: Path) -> tuple[Page, SessionTab, float]:
    """Technician: device page → *Open device web page* → the session tab, rendered."""
    portal = context.new_page()
    portal.on("dialog", lambda dialog: dialog.accept())
    _portal_sign_in(portal, info, "technician")
    portal.goto(f"{info.portal_url}/devices/{info.device(profile).id}")
    shots.mkdir(parents=True, exist_ok=True)
    portal.screenshot(path=str(shots / "01-device-page.png"))
    started = time.monotonic()
    with context.expect_page(timeout=60_000) as opened:
        portal.click("#open-device")
    page = opened.value
    page.wait_for_load_state("load")
    page.locator(LANDING[profile]).first.wait_for(state="attached", timeout=30_000)
    seconds = time.monotonic() - started
    match = re.match(r"^(https://s-[a-z2-7]{32}\.rt\.localhost:\d+)/", page.url)
    assert match, f"the tab is not on a session origin: {page.url}"
    tab = SessionTab(page, match.group(1), shots, step=1)
    tab.shot("first-page")
    return portal, tab, seconds


def _record(context: BrowserContext, seen: list[tuple[Page | None, str]],
            websockets: list[str]) -> None:
    """Every request and WebSocket of the context, with the tab that made it."""
    def on_request(request: Request) -> None:
        try:
            owner: Page | None = request.frame.page
        except Exception:   # a worker's request has no frame
            owner = None
        seen.append((owner, request.url))

    context.on("request", on_request)
    context.on("page", lambda page: page.on("websocket", lambda ws: websockets.append(ws.url)))


def _origin(url: str) -> str:
    match = re.match(r"^([a-z]+://[^/]+)", url)
    return match.group(1) if match else url


def _assert_same_origin(portal: Page, tab: SessionTab, seen: list[tuple[Page | None, str]],
                        websockets: list[str], info: DemoInfo) -> None:
    """Everything but the portal's own tab (the session tab; its very first requests, made
    before Playwright knew the new page, have no page) stayed on the session origin."""
    oauth = info.portal_url + "/oauth/authorize?"
    wss_origin = "wss://" + tab.origin.split("://", 1)[1]
    mine = [url for owner, url in seen if owner is not portal]
    stray = [url for url in mine if _origin(url) != tab.origin and not url.startswith(oauth)]
    assert not stray, f"requests left the session origin {tab.origin}: {stray}"
    assert all(_origin(url) == wss_origin for url in websockets), websockets
    assert any(url.startswith(oauth) for url in mine), "OAuth went through the portal"
    assert len(mine) > 5, mine


def _wait_for_ended_page(tab: SessionTab, path: str, timeout: float = 15.0) -> None:
    """The tab gets the relay's *ended* page (410). Just after the end the relay may still
    answer *device unreachable* (502: the tunnel is gone and the relay has not yet heard from
    the portal that the session ended); anything else, or no 410 in time, fails."""
    deadline = time.monotonic() + timeout
    statuses: list[int] = []
    while True:
        answer = tab.page.goto(tab.url(path))
        assert answer is not None
        statuses.append(answer.status)
        if answer.status == 410 or time.monotonic() > deadline:
            break
        assert answer.status == 502, statuses
        tab.page.wait_for_timeout(500)
    assert statuses[-1] == 410, statuses
    expect(tab.page.locator("h1")).to_contain_text("ended")


def _end_and_read_log(portal: Page, tab: SessionTab, info: DemoInfo,
                      expected: list[str]) -> list[dict[str, Any]]:
    """*End* on the progress page, the tab then shows the ended page, the log has it all."""
    session_id = portal.url.rstrip("/").rsplit("/", 1)[1]
    expect(portal.locator("#rt-status")).to_have_text("ready")
    portal.click("#rt-end-form button")
    expect(portal.locator("#rt-status")).to_have_text("ended", timeout=15_000)
    portal.screenshot(path=str(tab.shots / f"{tab.step + 1:02d}-session-ended-portal.png"))
    tab.step += 1
    _wait_for_ended_page(tab, "/")
    tab.shot("ended-page")
    client, _ = sign_in(info, "technician")
    try:
        session = client.get(f"{info.api_url}/remote-sessions/{session_id}").json()
        deadline = time.monotonic() + 30
        while True:
            log = client.get(f"{info.api_url}/jobs/{session['job_id']}/log").json()
            paths = log_paths(log["entries"])
            missing = [p for p in expected if p not in paths
                       and not any(u.split("?", 1)[0] == p for u in paths)]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        client.close()
    assert not missing, f"not in the Remote Technician Log: {missing}; log has {sorted(paths)}"
    return list(log["entries"])


@pytest.mark.parametrize("profile", DEMO_PROFILES)
def test_profile_through_session(browser: Browser, demo: DemoInfo, firmware: Firmware,
                                 artifacts_dir: Path, profile: str) -> None:
    shots = artifacts_dir / "profiles" / profile
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("**/*.png"):
        old.unlink()
    credentials = {"username": "admin", "password": "admin"} if profile == "sharp" else None
    context = _context(browser, http_credentials=credentials)
    seen: list[tuple[Page | None, str]] = []
    websockets: list[str] = []
    others: list[BrowserContext] = []
    try:
        _record(context, seen, websockets)
        portal, tab, seconds = _open_session(context, demo, profile, shots)
        _timings[profile] = {"seconds": round(seconds, 2),
                             "landing": tab.page.url.split(tab.origin, 1)[1]}
        print(f"\ntime to first page {profile}: {seconds:.2f} s ({tab.page.url})")
        if profile == "konica":
            def second() -> Page:
                others.append(_context(browser))
                return _open_session(others[-1], demo, profile, shots / "second")[1].page
            tab.second_session = second
        expected = STEPS[profile](tab, firmware)
        _assert_same_origin(portal, tab, seen, websockets, demo)
        if profile == "brother":
            _chromium_refuses_legacy_tls(browser, demo)
        entries = _end_and_read_log(portal, tab, demo, expected)
        uploads = [e for e in entries
                   if e["method"] == "POST" and e["bytes_in"] >= FIRMWARE_BYTES]
        assert uploads, "the 50 MB upload is in the log with its size"
    finally:
        context.close()
        for other in others:
            other.close()


def _chromium_refuses_legacy_tls(browser: Browser, info: DemoInfo) -> None:
    """The same device straight from Chromium: its TLS 1.0/1.1 is refused (the agent, not the
    browser, speaks it in a session)."""
    context = _context(browser)
    try:
        page = context.new_page()
        with pytest.raises(PlaywrightError, match="ERR_SSL_VERSION_OR_CIPHER_MISMATCH"):
            page.goto(f"https://127.0.0.1:{info.device('brother').https_port}/")
        # (no screenshot: Chromium's own error page cannot always be captured)
    finally:
        context.close()


@pytest.mark.parametrize(
    ("login", "visible", "absent", "shot"),
    [("configurer", "button[role=switch]", "#open-device", "01-configurer-device-page.png"),
     ("technician", "#open-device", "button[role=switch]", "02-technician-device-page.png")],
    ids=["configurer_sees_switch_but_no_open_button",
         "technician_sees_open_button_but_no_switch"],
)
def test_each_role_sees_only_its_own_control(browser: Browser, demo: DemoInfo,
                                              artifacts_dir: Path, login: str, visible: str,
                                              absent: str, shot: str) -> None:
    """The switch is the Configurer's, the *Open* button the User's; neither sees the other's."""
    shots = artifacts_dir / "profiles" / "negative"
    shots.mkdir(parents=True, exist_ok=True)
    context = _context(browser)
    try:
        page = context.new_page()
        _portal_sign_in(page, demo, login)
        page.goto(f"{demo.portal_url}/devices/{demo.device('absolute').id}")
        expect(page.locator(visible)).to_be_visible()
        expect(page.locator(absent)).to_have_count(0)
        page.screenshot(path=str(shots / shot), full_page=True)
    finally:
        context.close()


def test_expired_session_shows_the_ended_page(browser: Browser, short_demo: DemoInfo,
                                              artifacts_dir: Path) -> None:
    shots = artifacts_dir / "profiles" / "expiry"
    shots.mkdir(parents=True, exist_ok=True)
    context = _context(browser)
    try:
        portal, tab, _ = _open_session(context, short_demo, "absolute", shots)
        expect(tab.page.locator("#st-serial-number")).to_have_text("VCF9Z01234")
        expect(portal.locator("#rt-status")).to_have_text("ended", timeout=20_000)
        _wait_for_ended_page(tab, "/app/index.html")
        tab.shot("ended-after-expiry")
    finally:
        context.close()
