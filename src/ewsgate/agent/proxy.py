"""Outbound HTTP CONNECT proxy settings of the agent, and a plain CONNECT tunnel.

Sites often allow outbound traffic only through a proxy. ``--proxy URL`` (or ``HTTPS_PROXY`` /
``https_proxy`` when the flag is not given) names it, e.g. ``http://user:secret@proxy:3128``;
``NO_PROXY`` lists hosts reached directly (comma-separated names, ``.suffix`` or ``*``).
Credentials in the URL are sent as ``Proxy-Authorization: Basic``.

* The gRPC control stream uses grpcio's own CONNECT support (the ``grpc.http_proxy`` channel
  argument, which also sends the Basic credentials): :meth:`ProxyConfig.grpc_options`.
* Enrolment first reads the enrolment port's certificate chain over a raw TLS connection; that
  connection goes through :func:`open_tunnel`.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["ProxyConfig", "ProxyError", "open_tunnel", "resolve_proxy"]


class ProxyError(ConnectionError):
    """The proxy refused or failed the CONNECT; ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> ProxyConfig:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "") or not parts.hostname:
            raise ValueError(f"proxy URL {url!r}: expected http://[user:password@]host:port")
        return cls(host=parts.hostname, port=parts.port or 3128,
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None)

    @property
    def url(self) -> str:
        """``http://[user:pass@]host:port`` (credentials percent-encoded)."""
        from urllib.parse import quote

        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{auth}{host}:{self.port}"

    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` header value, or None without credentials."""
        if self.username is None:
            return None
        raw = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def grpc_options(self) -> list[tuple[str, object]]:
        return [("grpc.enable_http_proxy", 1), ("grpc.http_proxy", self.url)]

    def __repr__(self) -> str:  # never print the password
        return f"ProxyConfig({self.host}:{self.port}, user={self.username!r})"


def _bypassed(target_host: str, no_proxy: str) -> bool:
    host = target_host.lower().strip("[]")
    for entry in (item.strip().lower() for item in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*" or host == entry.lstrip(".") or host.endswith("." + entry.lstrip(".")):
            return True
    return False


def resolve_proxy(flag: str | None, target_host: str,
                  environ: Mapping[str, str] | None = None) -> ProxyConfig | None:
    """The proxy to use for ``target_host``: ``--proxy``, else ``HTTPS_PROXY``, minus NO_PROXY."""
    environ = os.environ if environ is None else environ
    url = flag or environ.get("HTTPS_PROXY") or environ.get("https_proxy")
    if not url:
        return None
    no_proxy = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
    if flag is None and _bypassed(target_host, no_proxy):
        return None
    return ProxyConfig.from_url(url)


def open_tunnel(host: str, port: int, proxy: ProxyConfig | None,
                timeout: float = 10.0) -> socket.socket:
    """A TCP socket to ``host:port``, directly or through the proxy's CONNECT (blocking)."""
    if proxy is None:
        return socket.create_connection((host, port), timeout=timeout)
    sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    try:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        auth = proxy.authorization()
        if auth:
            lines.append(f"Proxy-Authorization: {auth}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise ProxyError("proxy.closed", "the proxy closed the connection during CONNECT")
            head += chunk
            if len(head) > 65536:
                raise ProxyError("proxy.bad_response", "the proxy's CONNECT answer is too long")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        fields = status_line.split(" ", 2)
        if len(fields) < 2 or not fields[1].isdigit():
            raise ProxyError("proxy.bad_response", f"not an HTTP answer: {status_line!r}")
        status = int(fields[1])
        if status == 407:
            raise ProxyError("proxy.auth_required",
                             "the proxy wants credentials (407); put them in the proxy URL: "
                             "http://user:password@host:port")
        if not 200 <= status < 300:
            raise ProxyError("proxy.refused", f"the proxy refused CONNECT {target}: {status_line}")
        rest = head.split(b"\r\n\r\n", 1)[1]
        if rest:
            raise ProxyError("proxy.bad_response", "the proxy sent data before the tunnel opened")
        return sock
    except BaseException:
        sock.close()
        raise
