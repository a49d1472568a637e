"""``hostile``: a compromised device that attacks the technician's browser and the relay.

Every other profile is a quirky but honest printer. This one does, from the device's side,
what the relay's hardening is there to stop (issue 10), so one browser test can show each
attack refused. It is plain HTTP; the attacks are grouped, each group a function that adds
its routes to the profile and returns the :class:`Attack` list it serves:

``navigation_attacks``  redirects to the technician's own machine and LAN in the spellings a
                        browser reads as internal hosts (hex, octal, 1-4 part IPv4, trailing
                        dot, ``localhost.``, ``*.localhost``, ``http:host`` without slashes,
                        ``/\\host``, IPv4-mapped IPv6), by ``Location``, ``Refresh``, ``Link:
                        rel=preconnect`` and ``<meta http-equiv=refresh>`` (in HTML, in XML
                        rendered as XHTML, in a compression the relay did not offer); and a
                        page that navigates the browser top-level to another session's deep
                        path
``request_attacks``     a page whose script sends the override headers (``X-Original-URL``,
                        ``X-Rewrite-URL``, ``X-Client-IP``, ``True-Client-IP``,
                        ``X-Forwarded-Host``, ``X-HTTP-Method-Override``, ``Forwarded``),
                        ``_`` header names, ANSI escapes and 8-bit bytes in values, ambiguous
                        paths (``..%2f``, ``%5c``), secrets in query strings and a 30 KB URL

Targets point at loopback on the port given as ``?port=N`` (default: the device's own HTTP
port, whose ``/trapped`` page says the relay let the attack through), so a test can listen
there and prove nothing arrived. ``/attacks.json`` lists every attack; :attr:`HostileProfile.hits`
counts requests to the paths an attack must never reach (``/trapped``, ``/reboot.cgi``).

``websocket_attacks``   (in :mod:`.hostile_ws`) WebSocket upgrades answered with a ``101``
                        that sets cookies (the relay's own name, the parent domain), a ``101``
                        without or with a wrong ``Sec-WebSocket-Accept`` followed by plain HTTP,
                        an extension nobody offered, a socket recording every byte after its
                        ``101``; and a page planting cookies for the parent domain and under
                        the relay's cookie name, by header and by ``document.cookie`` (around
                        the relay's wrapper, through an ``about:blank`` frame's setter)

Another group joins by one line in :data:`ROUTE_GROUPS`: a function in its own module taking
the device (:class:`~ewsgate.devicesim.profiles.attacks.HostileDevice`) and returning its
:class:`~ewsgate.devicesim.profiles.attacks.Attack` list.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict

from ewsgate.devicesim.profiles.attacks import Attack, HostileDevice, load_group
from ewsgate.devicesim.profiles.base import Profile, ProfileInfo, Skin
from ewsgate.devicesim.web import Request, Response, esc, html_response, json_response, redirect

__all__ = ["ROUTE_GROUPS", "HostileProfile", "internal_spellings", "navigation_attacks",
           "request_attacks"]


def internal_spellings(port: int) -> dict[str, str]:
    """Loopback URLs on ``port`` as browsers parse them, keyed by the spelling's name."""
    return {
        "hex": f"http://0x7f.1:{port}/trapped",
        "two-part": f"http://127.1:{port}/trapped",
        "octal": f"http://0177.0.0.1:{port}/trapped",
        "one-number": f"http://2130706433:{port}/trapped",
        "trailing-dot": f"http://127.0.0.1.:{port}/trapped",
        "localhost-dot": f"http://localhost.:{port}/trapped",
        "sub-localhost": f"http://trap.localhost:{port}/trapped",
        "no-slashes": f"http:127.0.0.1:{port}/trapped",
        "backslash": f"/\\127.0.0.1:{port}/trapped",
        "mapped-v6": f"http://[::ffff:127.0.0.1]:{port}/trapped",
    }


def _port(profile: HostileDevice, request: Request) -> int:
    text = request.arg("port")
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    return profile.ctx.http_port or 80


def navigation_attacks(profile: HostileDevice) -> list[Attack]:
    """Redirects, refreshes, preconnects and meta refreshes to internal hosts."""
    attacks: list[Attack] = []
    router = profile.router
    for spelling in internal_spellings(1):

        async def location(request: Request, spelling: str = spelling) -> Response:
            return redirect(internal_spellings(_port(profile, request))[spelling])

        async def refresh(request: Request, spelling: str = spelling) -> Response:
            target = internal_spellings(_port(profile, request))[spelling]
            return profile.page("Refreshing", "<p>One moment.</p>",
                                headers=[("Refresh", f"0; url={target}")])

        async def meta(request: Request, spelling: str = spelling) -> Response:
            target = internal_spellings(_port(profile, request))[spelling]
            return profile.page("Refreshing", "<p>One moment.</p>", head=(
                f'<meta http-equiv="refresh" content="0; url={esc(target)}">'))

        for kind, handler, expect in (
                ("location", location, "the relay's refusal page instead of the redirect"),
                ("refresh", refresh, "the relay's refusal page instead of the response"),
                ("meta", meta, "the refresh goes to the relay's refusal page")):
            path = f"/attack/{kind}/{spelling}"
            router.add(path, handler)
            attacks.append(Attack(f"{kind}-{spelling}", path, "navigate", expect))

    async def preconnect(request: Request) -> Response:
        links = ", ".join(f"<{url}>; rel=preconnect" for url in
                          internal_spellings(_port(profile, request)).values())
        return profile.page("Preconnect", "<p>Nothing to see.</p>", headers=[("Link", links)])

    async def xhtml(request: Request) -> Response:
        target = internal_spellings(_port(profile, request))["hex"]
        body = ('<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><head>'
                f'<meta http-equiv="refresh" content="0; url={esc(target)}"/></head>'
                "<body><p>XML that browsers render as XHTML.</p></body></html>")
        return Response(200, [("Content-Type", "text/xml")], body.encode())

    async def unreadable(request: Request) -> Response:
        # a coding the relay did not offer: it cannot look inside for a <meta> refresh
        return Response(200, [("Content-Type", "text/html"), ("Content-Encoding", "br")],
                        b"\x1b\x00\x00not really brotli")

    router.add("/attack/meta-xhtml", xhtml)
    attacks.append(Attack("meta-xhtml", "/attack/meta-xhtml", "navigate",
                          "the XHTML refresh goes to the relay's refusal page"))
    router.add("/attack/unreadable-coding", unreadable)
    attacks.append(Attack("unreadable-coding", "/attack/unreadable-coding", "navigate",
                          "the relay's refusal page: it cannot check a page it cannot read"))
    router.add("/attack/link", preconnect)
    attacks.append(Attack("link-preconnect", "/attack/link", "navigate",
                          "the relay's refusal page: the browser preconnects to nothing"))

    async def navigate(request: Request) -> Response:
        target = request.arg("to", "/")
        return profile.page("Navigating", f'<p id="to">{esc(target)}</p><script>'
                            f"location.href = {json.dumps(target)};</script>")

    router.add("/attack/navigate", navigate)
    attacks.append(Attack("navigate-other-session", "/attack/navigate", "navigate",
                          "another session's deep path gets the relay's explaining page"))
    return attacks


REQUEST_SCRIPT = """
const results = {};
async function probe(name, url, headers) {
  try {
    const response = await fetch(url, {headers: headers || {}, cache: 'no-store'});
    const text = await response.text();
    let received = null;
    try { received = JSON.parse(text).headers; } catch (e) {}
    results[name] = {status: response.status, received: received};
  } catch (e) { results[name] = {status: 'error ' + e}; }
}
(async () => {
  await probe('override', '/echo', {
    'X-Original-URL': '/admin', 'X-Rewrite-URL': '/admin', 'X-Client-IP': '127.0.0.1',
    'True-Client-IP': '127.0.0.1', 'X-Forwarded-Host': '10.0.0.1',
    'X-Forwarded-For': '127.0.0.1', 'X-HTTP-Method-Override': 'DELETE',
    'Forwarded': 'for=127.0.0.1', 'X-Real-IP': '127.0.0.1', 'X-Kept': 'kept'});
  await probe('underscore', '/echo', {'X_Forwarded_Host': 'intranet'});
  await probe('ansi', '/echo', {'X-Note': 'a\\u001b[2Jb'});
  await probe('eight-bit', '/echo', {'X-Note': 'caf\\u00e9'});
  await probe('encoded-slash', '/..%2f..%2fecho');
  await probe('encoded-backslash', '/a%5cecho');
  await probe('secrets', '/echo?user=admin&password=hunter2&access_token=tok&community=private');
  await probe('long-url', '/echo?q=' + 'x'.repeat(30000));
  document.getElementById('out').textContent = JSON.stringify(results);
})();
"""


def request_attacks(profile: HostileDevice) -> list[Attack]:
    """Override headers, bad header names and values, ambiguous paths, log pollution."""

    async def page(request: Request) -> Response:
        return profile.page("Requests", f'<pre id="out">running</pre><script>{REQUEST_SCRIPT}'
                            "</script>")

    async def echo(request: Request) -> Response:
        profile.hits["/echo"] += 1
        return json_response({"headers": [name for name, _ in request.headers],
                              "target": request.target[:200]})

    profile.router.add("/attack/requests.html", page)
    profile.router.add("/echo", echo)
    return [Attack("requests", "/attack/requests.html", "page",
                   "override headers stripped; '_' names, control and 8-bit values and "
                   "ambiguous paths answered 400; secrets redacted and long URLs marked in the "
                   "log")]


#: the attack groups the profile serves (``"module:function"``, see :mod:`.attacks`); one line
#: adds another
ROUTE_GROUPS: tuple[str, ...] = (
    "ewsgate.devicesim.profiles.hostile:navigation_attacks",
    "ewsgate.devicesim.profiles.hostile:request_attacks",
    "ewsgate.devicesim.profiles.hostile_ws:websocket_attacks",
)


class HostileProfile(Profile):
    info = ProfileInfo(
        name="hostile", make="Acme", model="Hostile 9000", serial="EVIL0001",
        mac="02:00:5e:10:00:66", snmp_vendor="hp", server="Hostile-EWS/1.0",
        hostname_prefix="EVL", firmware="6.6.6",
        summary="A compromised device: redirects to internal hosts in browser spellings, "
                "Refresh/Link/meta refresh, override headers, bad header bytes, ambiguous "
                "paths, log pollution, navigation into other sessions, WebSocket upgrades "
                "that set cookies or skip the accept, parent-domain cookies")
    skin = Skin(logo="ACME", product_line="Hostile", header_bg="#5a0000", accent="#a00000")

    def setup(self) -> None:
        #: requests to paths no attack may reach, by path
        self.hits: Counter[str] = Counter()
        self.attacks: list[Attack] = []
        r = self.router
        r.add("/", self.index)
        r.add("/status.html", self.status)
        r.add("/settings.html", self.settings, ("GET", "POST"))
        r.add("/firmware.html", self.firmware)
        r.add("/firmware_upload.cgi", self.upload, ("POST",))
        r.add("/logs.html", self.logs)
        r.add("/logs/full.log", self.full_log)
        r.add("/attacks.json", self.attack_list)
        r.add("/trapped", self.trapped)
        r.add("/reboot.cgi", self.reboot)
        for name in ROUTE_GROUPS:
            self.attacks.extend(load_group(name)(self))

    def nav(self) -> list[tuple[str, str]]:
        return [("Attacks", "/"), ("Status", "/status.html"), ("Settings", "/settings.html"),
                ("Firmware", "/firmware.html"), ("Logs", "/logs.html")]

    async def index(self, request: Request) -> Response:
        rows = "".join(f'<tr><td><a href="{esc(a.path)}">{esc(a.name)}</a></td>'
                       f"<td>{esc(a.expect)}</td></tr>" for a in self.attacks)
        return self.page("Attacks", '<p>Each link is an attack the relay must refuse.</p>'
                         f'<table class="grid" id="attacks">{rows}</table>')

    async def attack_list(self, request: Request) -> Response:
        return json_response([asdict(a) for a in self.attacks])

    async def trapped(self, request: Request) -> Response:
        self.hits["/trapped"] += 1
        self.ctx.log("an attack reached the trap: the relay let it through", "error")
        return html_response("<h1 id='trapped'>Trapped: the relay let this through.</h1>")

    async def reboot(self, request: Request) -> Response:
        self.hits["/reboot.cgi"] += 1
        self.ctx.log("reboot requested", "warning")
        return self.page("Reboot", '<p id="rebooting">Rebooting now.</p>')

    async def status(self, request: Request) -> Response:
        return self.page("Status", self.status_html())

    async def settings(self, request: Request) -> Response:
        if request.method == "POST":
            error = self.apply_settings(await request.form())
            if error:
                return self.page("Settings", f'<div class="err">{esc(error)}</div>', 400)
            return redirect("/settings.html?saved=1", 303)
        message = "The settings were changed." if request.arg("saved") else ""
        return self.page("Settings", self.settings_form_html("/settings.html", message=message))

    async def firmware(self, request: Request) -> Response:
        return self.page("Firmware", self.firmware_form_html("/firmware_upload.cgi"))

    async def upload(self, request: Request) -> Response:
        return await self.firmware_upload(request)

    async def logs(self, request: Request) -> Response:
        return self.page("Logs", self.logs_html("/logs/full.log"))

    async def full_log(self, request: Request) -> Response:
        return self.log_download(request, "hostile.log")
