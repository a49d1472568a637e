"""Outbound TCP for the agent: direct or through an HTTP CONNECT proxy, always TCP_NODELAY.

Sites often allow outbound traffic only through a proxy. :func:`open_socket` connects to the
proxy, sends ``CONNECT host:port`` (with ``Proxy-Authorization: Basic`` when the proxy URL has
credentials), checks for a 2xx answer, and returns the connected socket; TLS to the relay then
runs inside it end to end, so the proxy sees only the relay's name.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import ipaddress
import os
import socket
from typing import Any
from urllib.parse import unquote, urlsplit

from ewsgate.aio.errors import TunnelError, map_exceptions
from ewsgate.tunnel import ErrorCode

__all__ = ["ProxyError", "connect_tcp", "open_socket"]

_MAX_PROXY_RESPONSE = 16 * 1024


class ProxyError(TunnelError):
    """The HTTP proxy refused or garbled the CONNECT."""


def _literal(host: str, port: int) -> list[tuple[Any, ...]] | None:
    """The address of an IP literal, or None for a name.

    An IP literal needs no resolver: ``getaddrinfo`` would only hand it to the event loop's
    thread pool (uvloop starts four threads for it, ~0.7 MiB of RSS) and back.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 6:
        return [(socket.AF_INET6, socket.SOCK_STREAM, 0, "", (host, port, 0, 0))]
    return [(socket.AF_INET, socket.SOCK_STREAM, 0, "", (host, port))]


async def _sock_connect(loop: asyncio.AbstractEventLoop, sock: socket.socket,
                        addr: tuple[Any, ...]) -> None:
    """``loop.sock_connect`` for an address that is already resolved.

    uvloop's ``sock_connect`` resolves its address again, an IP literal too, in a thread pool
    that it starts for the purpose (four threads, ~0.7 MiB of RSS for the life of the process).
    """
    err = sock.connect_ex(addr)
    if err in (errno.EINPROGRESS, errno.EAGAIN):
        done: asyncio.Future[None] = loop.create_future()

        def writable() -> None:
            if not done.done():
                done.set_result(None)

        fd = sock.fileno()
        loop.add_writer(fd, writable)
        try:
            await done
        finally:
            loop.remove_writer(fd)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, f"Connect call failed {addr}: {os.strerror(err)}")


async def connect_tcp(host: str, port: int) -> socket.socket:
    """A connected, non-blocking TCP_NODELAY socket to ``host:port`` (first address that
    answers; an IP literal is not resolved)."""
    loop = asyncio.get_running_loop()
    infos = _literal(host, port) or await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    last: OSError | None = None
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await _sock_connect(loop, sock, addr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:  # cancelled (a timeout): leave no half-open socket behind
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise last or OSError(f"no address for {host}")


async def open_socket(host: str, port: int, proxy: str | None = None,
                      connect_within: float = 15.0) -> socket.socket:
    """A connected, non-blocking TCP socket to ``host:port`` (via ``proxy`` if given)."""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    with map_exceptions(f"connecting to {target}" + (f" via proxy {_redact(proxy)}"
                                                     if proxy else "")):
        async with asyncio.timeout(connect_within):
            if not proxy:
                return await connect_tcp(host, port)
            parts = urlsplit(proxy)
            if parts.scheme != "http" or not parts.hostname:
                raise ProxyError(f"proxy URL {_redact(proxy)} is not http://[user:pass@]host:port",
                                 ErrorCode.CONNECT_FAILED)
            sock = await connect_tcp(parts.hostname, parts.port or 3128)
            try:
                await _handshake(sock, target, parts.username, parts.password)
            except BaseException:
                sock.close()
                raise
            return sock


async def _handshake(sock: socket.socket, target: str, user: str | None,
                     password: str | None) -> None:
    loop = asyncio.get_running_loop()
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if user is not None:
        token = base64.b64encode(f"{unquote(user)}:{unquote(password or '')}".encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    await loop.sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        # byte-at-a-time would be slow; the proxy sends nothing after the header block until
        # we speak (TLS ClientHello), so reading in chunks cannot swallow tunnel bytes
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            raise ProxyError("the proxy closed the connection during CONNECT",
                             ErrorCode.CONNECT_FAILED)
        response += chunk
        if len(response) > _MAX_PROXY_RESPONSE:
            raise ProxyError("the proxy's CONNECT answer is too long", ErrorCode.CONNECT_FAILED)
    status_line = response.split(b"\r\n", 1)[0].decode("latin-1")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[1].isdigit() or not 200 <= int(fields[1]) < 300:
        hint = " (check the proxy credentials)" if " 407" in status_line else ""
        raise ProxyError(f"the proxy refused CONNECT {target}: {status_line}{hint}",
                         ErrorCode.CONNECT_FAILED)
    if not response.endswith(b"\r\n\r\n"):
        raise ProxyError("the proxy sent data after its CONNECT answer", ErrorCode.CONNECT_FAILED)


def _redact(url: str | None) -> str:
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"
