"""Time to first page in Chromium, per printer profile: the table for the docs.

The browser suite (``tests/integration/test_profiles_browser.py``) measures, for every simulated
printer profile, the time from the click on *Open device web page* in the portal to the device's
first page rendered in the tab the portal opened (the session created, the agent's identity
check, the tunnel, OAuth, the first page and its sub-resources through the relay), and writes
``build/test-artifacts/time-to-first-page.json``. This script reads that file (it measures
nothing itself) and writes the Markdown section "Time to first page (browser)":

* into ``docs/time-to-first-page.md`` (always: the section on its own page), and
* into ``docs/performance.md`` between ``<!-- ttfp:start -->`` and ``<!-- ttfp:end -->`` when
  that file exists (the section is replaced in place, or appended once; the rest of the file is
  left alone).

    python bench/time_to_first_page.py [--json FILE] [--print]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "render", "upsert_section"]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO / "build" / "test-artifacts" / "time-to-first-page.json"
OWN_PAGE = REPO / "docs" / "time-to-first-page.md"
PERFORMANCE = REPO / "docs" / "performance.md"
START, END = "<!-- ttfp:start -->", "<!-- ttfp:end -->"

QUIRK = {
    "hp": "HTTPS-enforcing, absolute redirect to https://<device-ip>",
    "brother": "legacy TLS 1.0/1.1 (the agent terminates it), login box",
    "ricoh": "JavaScript jump to a frameset (three frames)",
    "sharp": "frameset; Digest/Basic prompt",
    "absolute": "absolute redirect; page names http:// and ws:// device URLs",
    "panel": "redirect to the remote panel; WebSocket connects",
    "konica": "redirect to the single-admin login page",
    "legacyhttp": "HTTP/1.0 body ended by EOF",
}


PAGE_HEAD = """# Every printer profile in Chromium, and the time to first page

`tests/integration/test_profiles_browser.py` (markers `integration`, `browser`) is the proof
that every simulated printer profile works through Remote Technician in a real browser. One
Debian Chromium (Playwright's sync API) for the module, over the one shared `demo` stack of
`tests/integration/conftest.py`. For each profile the technician signs in to the portal UI,
opens the device page, clicks *Open device web page*, follows the tab the portal opens when the
session is ready through OAuth, and then (`tests/integration/profile_steps.py`): logs in where
the printer has a login (Brother's per-boot field name, CSRF token, `AuthCookie` and 301 after
POST; Ricoh's frames and base64 login; Sharp's Digest prompt answered from the context's
`http_credentials`; Konica's single admin session: a second browser through a second session is
refused while it is held, and it is logged out at the end), changes a setting and
reads it back after a reload, follows the profile's redirects and absolute links, uses the
remote panel WebSocket (a key press changes the display, on the relative and the absolute-URL
page), uploads a 50 MB firmware file and compares the SHA-256 the device reports with hashlib's,
ends the session with *End* on the progress page (the tab then gets the relay's *ended* page,
410) and finds those requests in the job's Remote Technician Log (`GET /api/v1/jobs/{id}/log`).
Every request and WebSocket the session tab makes is recorded: all go to the session origin,
the single hop to the portal's `/oauth/authorize` aside. Negatives: the configurer sees the
switch but no *Open* button, the technician the button but no switch, and a 6-second session
(`short_demo`) shows the ended page after expiry.

Screenshots of each step: `build/test-artifacts/profiles/<profile>/NN-step.png`. Run:
`.venv/bin/pytest tests/integration/test_profiles_browser.py -s` (prints the figures), then
`python bench/time_to_first_page.py` to refresh the table below.

"""


def render(data: dict[str, Any]) -> str:
    """The section (heading, what was measured, the table) from the suite's JSON."""
    profiles: dict[str, dict[str, Any]] = data.get("profiles", {})
    if not profiles:
        raise ValueError("the JSON has no 'profiles': run the browser suite first "
                         "(.venv/bin/pytest tests/integration/test_profiles_browser.py)")
    rows = []
    for name, figure in sorted(profiles.items(), key=lambda kv: kv[1]["seconds"]):
        rows.append(f"| `{name}` | {figure['seconds']:.2f} | `{figure.get('landing', '')}` | "
                    f"{QUIRK.get(name, '')} |")
    seconds = sorted(float(f["seconds"]) for f in profiles.values())
    median = seconds[len(seconds) // 2] if len(seconds) % 2 else (
        (seconds[len(seconds) // 2 - 1] + seconds[len(seconds) // 2]) / 2)
    return "\n".join([
        "## Time to first page (browser)",
        "",
        "Measured by the browser suite (`tests/integration/test_profiles_browser.py`) in Debian's "
        "Chromium through Playwright, on the whole demo system on loopback (portal, relay, an "
        "enrolled agent, one simulated printer per profile, every one its own process): from the "
        "click on *Open device web page* in the portal to the device's first page rendered in "
        "the tab the portal opens when the session is ready. That covers creating the session, "
        "the agent's SNMP identity check, the tunnel to the relay, the portal UI's poll noticing "
        "*ready* (every 0.5 s), the OAuth round trip and the device's first page with its "
        "sub-resources through the relay. One run, one sample per profile, on a shared 2-core "
        "machine while other suites ran: read the figures as seconds, not milliseconds. The "
        "suite runs the profiles in the order hp, brother, ricoh, sharp, absolute, panel, "
        "konica, legacyhttp; the first runs on a freshly started stack.",
        "",
        "| profile | seconds | first page | what the first page involves |",
        "| --- | ---: | --- | --- |",
        *rows,
        "",
        f"Median {median:.2f} s, slowest {seconds[-1]:.2f} s, fastest {seconds[0]:.2f} s "
        f"over {len(seconds)} profiles. Regenerate with `python bench/time_to_first_page.py` "
        "after running the suite.",
        "",
    ])


def upsert_section(document: str, section: str) -> str:
    """``document`` with the marked section replaced (or appended when it has none)."""
    block = f"{START}\n{section.rstrip()}\n{END}\n"
    if START in document and END in document:
        head, rest = document.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        return head + block + ("\n" + tail if tail else "")
    return document.rstrip("\n") + "\n\n" + block


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help="the suite's figures (default: %(default)s)")
    parser.add_argument("--print", action="store_true", help="print the section too")
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.json.read_text())
        section = render(data)
    except FileNotFoundError:
        print(f"bench.ttfp_missing: {args.json} does not exist; run the browser suite first "
              "(.venv/bin/pytest tests/integration/test_profiles_browser.py)", file=sys.stderr)
        return 2
    except (ValueError, KeyError, TypeError) as error:
        print(f"bench.ttfp_bad_json: {args.json}: {error}", file=sys.stderr)
        return 2
    OWN_PAGE.write_text(PAGE_HEAD + section)
    written = [OWN_PAGE]
    if PERFORMANCE.exists():
        PERFORMANCE.write_text(upsert_section(PERFORMANCE.read_text(), section))
        written.append(PERFORMANCE)
    if args.print:
        print(section)
    for path in written:
        print(f"wrote {path.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
