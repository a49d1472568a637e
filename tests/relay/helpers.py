"""Test peers for the relay's browser side: a device HTTP server, a portal, a browser client.

All of them are real servers and clients on 127.0.0.1 (real TCP, real TLS towards the relay).
The portal here is a stand-in for the real authorization server (outside the relay's subject):
it implements the token endpoint and JWKS exactly as docs/relay.md specifies.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import json
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from ewsgate.relay.access_log import AccessLog, PortalLogShipper
from ewsgate.relay.browser_auth import BrowserAuth, OAuthClientConfig
from ewsgate.relay.clock import Clock, SystemClock
from ewsgate.relay.http_proxy import ProxyConfig, RelayProxy
from ewsgate.relay.portal_sessions import PortalSessions
from ewsgate.relay.tickets import JwksKeySource
from ewsgate.relay.upstream import DeviceView, Endpoint, SessionInfo, StaticDirectory

DOMAIN = "rt.localhost"
RELAY_ID = "7"
RELAY_SECRET = "relay-secret-for-tests"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def spool_entries(spool: Path) -> list[dict[str, Any]]:
    """The spool's entries as the portal stores them: a forwarded request's ``pending`` begin
    line replaced by its completion (same session and seq), in the order requests began."""
    merged: dict[tuple[str, int], dict[str, Any]] = {}
    for path in sorted(spool.glob("segment-*")):
        for line in path.read_bytes().splitlines():
            entry = json.loads(line)
            key = (entry["session_id"], entry["seq"])
            if key not in merged or merged[key]["outcome"] == "pending":
                merged[key] = entry
    return list(merged.values())


def new_session_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "".join(secrets.choice(alphabet) for _ in range(32))


class RawServer:
    """A TCP server on 127.0.0.1 running ``handler(reader, writer)`` per connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.server: asyncio.Server | None = None
        self.connections = 0

    async def __aenter__(self) -> RawServer:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, h11.ProtocolError,
                    asyncio.CancelledError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(run, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)


async def read_request(reader: asyncio.StreamReader, conn: h11.Connection
                       ) -> tuple[h11.Request | None, bytes]:
    """One request and its whole body from ``conn`` (None when the peer closed)."""
    request = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed) or event is h11.PAUSED:
            return request, bytes(body)


@dataclass
class Seen:
    """What the device received."""

    requests: list[tuple[h11.Request, bytes]] = field(default_factory=list)


def device_app(routes: dict[str, Callable[[h11.Request, bytes], tuple[int, list, bytes]]],
               seen: Seen) -> Handler:
    """An HTTP/1.1 keep-alive device answering from ``routes[path]`` (exact path match)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            request, body = await read_request(reader, conn)
            if request is None:
                return
            seen.requests.append((request, body))
            path = request.target.decode().split("?", 1)[0]
            route = routes.get(path)
            if route is None:
                status, headers, payload = 404, [("Content-Type", "text/plain")], b"not here"
            else:
                status, headers, payload = route(request, body)
            if not any(name.lower() in ("content-length", "transfer-encoding")
                       for name, _ in headers):
                headers = [*headers, ("Content-Length", str(len(payload)))]
            writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
            if payload:
                writer.write(conn.send(h11.Data(data=payload)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()

    return handler


class FakePortal:
    """The portal's token endpoint and JWKS (ES256), as the relay's contract describes them."""

    def __init__(self) -> None:
        self.key = ECKey.generate_key("P-256", parameters={"kid": "k1", "alg": "ES256",
                                                            "use": "sig"})
        self.codes: dict[str, dict[str, Any]] = {}
        self.token_requests: list[dict[str, str]] = []
        self.log_batches: list[dict[str, Any]] = []
        #: set to e.g. 503 to make the log-batch endpoint fail
        self.log_status = 200
        #: per session: {"live": bool, "user_id": str} overriding "live, owned by user 42"
        self.session_state: dict[str, dict[str, Any]] = {}
        #: HTML served at /evil: a third-party page for cross-site tests
        self.evil_page = "<p>evil</p>"
        self.server = RawServer(self._handle)
        self.url = ""

    async def __aenter__(self) -> FakePortal:
        await self.server.__aenter__()
        self.url = f"http://127.0.0.1:{self.server.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.__aexit__(*exc)

    def sign(self, claims: dict[str, Any], typ: str = "at+jwt", key: ECKey | None = None) -> str:
        header = {"alg": "ES256", "typ": typ, "kid": (key or self.key).kid}
        return jwt.encode(header, claims, key or self.key)

    def access_token(self, *, sid: str, sub: str = "42", email: str = "tech@example.com",
                     aud: str = RELAY_ID, ttl: int = 300, now: float | None = None,
                     **extra: Any) -> str:
        now = int(now if now is not None else time.time())
        claims = {"iss": self.url, "aud": aud, "client_id": aud, "sub": sub, "email": email,
                  "sid": sid, "iat": now, "nbf": now, "exp": now + ttl, "jti": secrets.token_hex(8),
                  "typ": "ewsgate-access-token", **extra}
        return self.sign(claims)

    def authorize(self, location: str, *, sub: str = "42", email: str = "tech@example.com",
                  sid: str | None = None, now: float | None = None) -> str:
        """What the portal's /oauth/authorize does for a signed-in owner: the callback URL."""
        query = parse_qs(urlsplit(location).query)
        redirect_uri = query["redirect_uri"][0]
        session_host = urlsplit(redirect_uri).hostname or ""
        session_id = sid or session_host.split(".", 1)[0][2:]
        code = secrets.token_urlsafe(24)
        self.codes[code] = {"challenge": query["code_challenge"][0],
                            "method": query["code_challenge_method"][0],
                            "redirect_uri": redirect_uri, "client_id": query["client_id"][0],
                            "token": self.access_token(sid=session_id, sub=sub, email=email,
                                                       now=now)}
        return f"{redirect_uri}?code={code}&state={query['state'][0]}&iss={self.url}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            request, body = await read_request(reader, conn)
            if request is None:
                return
            path = request.target.decode()
            if path.startswith("/oauth/authorize?"):
                # the signed-in owner approves at once (what the real portal does after login)
                callback = self.authorize(path)
                writer.write(conn.send(h11.Response(status_code=303, headers=[
                    ("Location", callback), ("Content-Length", "0")])))
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                conn.start_next_cycle()
                continue
            if path == "/evil":
                data = self.evil_page.encode()
                writer.write(conn.send(h11.Response(status_code=200, headers=[
                    ("Content-Type", "text/html"), ("Content-Length", str(len(data)))])))
                writer.write(conn.send(h11.Data(data=data)) + conn.send(h11.EndOfMessage()))
                await writer.drain()
                conn.start_next_cycle()
                continue
            status, payload = self._route(request, body)
            data = json.dumps(payload).encode()
            writer.write(conn.send(h11.Response(status_code=status, headers=[
                ("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                ("Access-Control-Allow-Origin", "*")])))
            writer.write(conn.send(h11.Data(data=data)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            conn.start_next_cycle()

    def _route(self, request: h11.Request, body: bytes) -> tuple[int, Any]:
        path = request.target.decode()
        if path == "/.well-known/jwks.json":
            return 200, KeySet([self.key]).as_dict(private=False)
        auth = dict(request.headers).get(b"authorization", b"")
        expected = b"Basic " + base64.b64encode(f"{RELAY_ID}:{RELAY_SECRET}".encode())
        if path == "/api/v1/relay/log-batches":
            if auth != expected:
                return 401, {"error": {"code": "unauthorized", "message": "bad relay"}}
            if self.log_status != 200:
                return self.log_status, {"error": {"code": "unavailable", "message": "down"}}
            self.log_batches.append(json.loads(body))
            return 200, {"accepted": len(json.loads(body)["entries"])}
        if path.startswith("/api/v1/relay/sessions/"):
            if auth != expected:
                return 401, {"error": {"code": "invalid_relay_credentials", "message": "no"}}
            sid = path.rsplit("/", 1)[1]
            state = {"live": True, "user_id": "42", **self.session_state.get(sid, {})}
            return 200, {"session_id": sid, "status": "ready" if state["live"] else "ended",
                         "live": state["live"], "user_id": state["user_id"],
                         "expires_at_unix": None}
        if path == "/oauth/token":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            self.token_requests.append(form)
            if auth != expected:
                return 401, {"error": "invalid_client"}
            grant = self.codes.pop(form.get("code", ""), None)
            if grant is None:
                return 400, {"error": "invalid_grant"}
            challenge = base64.urlsafe_b64encode(hashlib.sha256(
                form.get("code_verifier", "").encode()).digest()).rstrip(b"=").decode()
            if challenge != grant["challenge"] or form.get("redirect_uri") != grant[
                    "redirect_uri"]:
                return 400, {"error": "invalid_grant"}
            return 200, {"access_token": grant["token"], "token_type": "Bearer",
                         "expires_in": 300}
        return 404, {"error": "not_found"}

    def entries(self) -> list[dict[str, Any]]:
        """Every shipped entry, deduplicated by (session, seq) as the portal does (a completion
        replaces its ``pending`` begin)."""
        unique: dict[tuple[str, int], dict[str, Any]] = {}
        for batch in self.log_batches:
            for entry in batch["entries"]:
                key = (entry["session_id"], entry["seq"])
                if key not in unique or unique[key]["outcome"] == "pending":
                    unique[key] = entry
        return [unique[key] for key in sorted(unique)]


@functools.lru_cache(maxsize=1)
def _tls_material() -> tuple[Any, Any]:
    """A CA and a ``*.rt.localhost`` certificate, made once per run (key generation is slow)."""
    import trustme

    ca = trustme.CA()
    return ca, ca.issue_cert(f"*.{DOMAIN}", DOMAIN)


@functools.lru_cache(maxsize=1)
def make_tls() -> tuple[ssl.SSLContext, ssl.SSLContext, Any]:
    """Server and client contexts for the CA and certificate of :func:`_tls_material`."""
    ca, cert = _tls_material()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client, ca


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower().encode():
                return value.decode("latin-1")
        return None

    def all(self, name: str) -> list[str]:
        return [v.decode("latin-1") for k, v in self.headers if k.lower() == name.lower().encode()]


class Relay:
    """The relay's browser side on 127.0.0.1 over real TLS, with a static device directory."""

    def __init__(self, tmp: Path, portal: FakePortal, *, clock: Clock | None = None,
                 directory: Any = None, spool: Path | None = None, ship: bool = False,
                 **config: Any) -> None:
        self.tmp = tmp
        #: where the access log spools (default ``tmp/spool``); ``ship``: to the portal
        self.spool = spool or tmp / "spool"
        self.ship = ship
        self.portal = portal
        self.clock = clock or SystemClock()
        self.config_overrides = config
        self.directory = directory if directory is not None else StaticDirectory()
        self.server_ctx, self.client_ctx, self.ca = make_tls()

    async def __aenter__(self) -> Relay:
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.config = ProxyConfig(domain=DOMAIN, portal_url=self.portal.url,
                                  public_port=self.port, **self.config_overrides)
        self.http = httpx.AsyncClient()
        self.keys = JwksKeySource(self.portal.url)
        self.sessions = PortalSessions(self.portal.url, RELAY_ID, RELAY_SECRET, self.http,
                                       self.clock, ttl=0)
        self.auth = BrowserAuth(
            OAuthClientConfig(relay_id=RELAY_ID, relay_secret=RELAY_SECRET,
                              portal_url=self.portal.url, cookie_key=b"k" * 32),
            session_host=self.config.session_host, clock=self.clock, keys=self.keys,
            http=self.http, sessions=self.sessions)
        self.shipper = PortalLogShipper(self.portal.url, RELAY_ID, RELAY_SECRET) if (
            self.ship) else None
        self.log = AccessLog(self.spool, self.shipper, ship_interval=0.1, max_backoff=0.5)
        self.shipping = asyncio.create_task(self.log.run()) if self.ship else None
        self.proxy = RelayProxy(self.config, self.directory, self.auth, self.log, self.clock,
                                self.sessions)
        # a context of its own, so the relay's server-name callback is this relay's
        self.server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        _tls_material()[1].configure_cert(self.server_ctx)
        self.proxy.server_names.install(self.server_ctx)
        self.server = await asyncio.start_server(self.proxy.handle, sock=sock,
                                                 ssl=self.server_ctx)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        if self.shipping is not None:
            self.shipping.cancel()
            with contextlib.suppress(BaseException):
                await self.shipping
        if self.shipper is not None:
            await self.log.drain(within=3.0)
            await self.shipper.aclose()
        self.log.close()
        await self.http.aclose()

    def add_device(self, target_port: int, *, ip: str = "10.0.0.5", hostname: str | None = None,
                   endpoints: tuple[Endpoint, ...] = (Endpoint("http", 80),),
                   expires_in: float = 1800, session_id: str | None = None,
                   policy: Any = None) -> str:
        sid = session_id or new_session_id()
        now = self.clock.now()
        info = SessionInfo(session_id=sid, expires_at=now + expires_in,
                           device=DeviceView(ip=ip, hostname=hostname, endpoints=endpoints),
                           started_at=now, **({"policy": policy} if policy else {}))
        self.directory.add(info, [("127.0.0.1", target_port)] * len(endpoints))
        return sid

    def host(self, sid: str) -> str:
        return self.config.session_host(sid)

    async def connect(self, sid: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=self.client_ctx,
            server_hostname=f"s-{sid}.{DOMAIN}")

    async def raw(self, sid: str, data: bytes, *, read_timeout: float = 5.0) -> bytes:
        """Send raw bytes, return everything until the relay closes (or the timeout)."""
        reader, writer = await self.connect(sid)
        writer.write(data)
        await writer.drain()
        out = bytearray()
        with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError):
            while chunk := await asyncio.wait_for(reader.read(65536), read_timeout):
                out += chunk
        writer.close()
        return bytes(out)

    async def fetch(self, sid: str, method: str = "GET", path: str = "/", *,
                    headers: list[tuple[str, str]] | None = None, body: bytes = b"",
                    cookie: str | None = None, host: str | None = None) -> Response:
        reader, writer = await self.connect(sid)
        try:
            conn = h11.Connection(h11.CLIENT)
            hdrs = [("Host", host or self.host(sid)), *(headers or [])]
            if cookie:
                hdrs.append(("Cookie", cookie))
            if body or method in ("POST", "PUT"):
                hdrs.append(("Content-Length", str(len(body))))
            writer.write(conn.send(h11.Request(method=method, target=path, headers=hdrs)))
            if body:
                writer.write(conn.send(h11.Data(data=body)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            status, rheaders, rbody = 0, [], bytearray()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await asyncio.wait_for(reader.read(65536), 10))
                    continue
                if isinstance(event, h11.Response):
                    status, rheaders = event.status_code, list(event.headers)
                elif isinstance(event, h11.Data):
                    rbody += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
            return Response(status, [(bytes(k), bytes(v)) for k, v in rheaders], bytes(rbody))
        finally:
            writer.close()

    async def login(self, sid: str, **kwargs: Any) -> str:
        """Go through the OAuth flow for ``sid``; return the Cookie header value to use."""
        first = await self.fetch(sid, "GET", "/")
        assert first.status == 302, first
        location = first.header("location") or ""
        state_cookie = first.header("set-cookie").split(";", 1)[0]
        callback = self.portal.authorize(location, **kwargs)
        parts = urlsplit(callback)
        done = await self.fetch(sid, "GET", f"{parts.path}?{parts.query}", cookie=state_cookie)
        assert done.status == 303, (done.status, done.body[:500])
        cookie = next(c for c in done.all("set-cookie") if c.startswith("__Host-ewsgate_rt="))
        return cookie.split(";", 1)[0]
