"""The host parser against the browser itself: Chromium's ``new URL()`` on the same inputs."""

from __future__ import annotations

import json
import random

import pytest

from ewsgate.relay.hosts import parse_host, url_target

from .test_hosts import HOSTS, TARGETS
from .test_in_chromium import _browser

pytestmark = [pytest.mark.integration, pytest.mark.browser]

_PARTS = ["0", "00", "07", "08", "010", "0x", "0x0", "0xA", "0XfF", "255", "256", "65535",
          "16777215", "4294967295", "4294967296", "1", "127", "10", "0x7f", "0177", "a", "x0",
          "", "%30", "%2e", "\uff11", "\uff10\uff58\uff41", "localhost", "LOCALHOST", "xn--"]


def _spellings(count: int) -> list[str]:
    rng = random.Random(20261204)
    spellings = []
    for _ in range(count):
        parts = [rng.choice(_PARTS) for _ in range(rng.randint(1, 5))]
        text = rng.choice([".", "\uff0e", "\u3002"]).join(parts)
        if rng.random() < 0.2:
            text += "."
        spellings.append(text)
    return spellings


SCRIPT = """(inputs) => inputs.map((input) => {
  try { const u = new URL(input[0], 'https://s-aaaa.rt.example.com/dir/page');
        return [u.protocol, u.hostname, u.port]; }
  catch (e) { return null; }
})"""


async def test_hosts_and_targets_parse_as_chromium_parses_them() -> None:
    hosts = [text for text, _ in HOSTS] + _spellings(400)
    host_inputs = [[f"http://{text}/"] for text in hosts]
    target_inputs = [[url] for url, *_ in TARGETS]
    manager, browser = await _browser()
    try:
        page = await browser.new_page()
        host_results = await page.evaluate(SCRIPT, host_inputs)
        target_results = await page.evaluate(SCRIPT, target_inputs)
    finally:
        await browser.close()
        await manager.__aexit__(None, None, None)
    mismatches = []
    for text, result in zip(hosts, host_results, strict=True):
        ours = parse_host(text)
        theirs = None if result is None else result[1]
        if (ours.text if ours else None) == theirs:
            continue
        # stricter than Chromium only where it departs from the URL Standard: it escapes a
        # space ("exa%20mple.com") and skips the IDNA checks for ASCII input ("xn--")
        if ours is None and theirs is not None and (
                " " in text or "%20" in text or "xn--" in text):
            # a redirect there is refused as unparsable: the safe side
            continue
        mismatches.append((text, ours.text if ours else None, theirs))
    assert not mismatches, json.dumps(mismatches[:20], ensure_ascii=True)
    for (url, *_), result in zip(TARGETS, target_results, strict=True):
        ours = url_target(url)
        if result is None:
            assert ours is None, url
            continue
        assert ours is not None, url
        if ours.host is None:
            continue  # relative (the base's host) or a scheme without a host
        assert ours.host.text == result[1], (url, ours.host.text, result)
