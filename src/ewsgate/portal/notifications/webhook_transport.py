"""The webhook's HTTP transport: it connects only to public addresses (or allowed networks).

A customer's Administrator chooses the webhook URL, so the URL must not become a way to make
the portal POST to its own network (SSRF): a loopback, private, link-local, multicast or
reserved address is refused unless an operator allowed its network
(``--webhook-allow-network``). The check happens where the socket is opened, on the address
actually dialled: the name is resolved once, every address it resolves to is checked, and the
connection goes to a checked address — so a DNS answer that changes between check and connect
(rebinding) cannot slip through. TLS still verifies the certificate against the URL's host name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable, Sequence
from typing import Any

import httpcore
import httpx

__all__ = ["AddressRefused", "GuardedTransport", "address_allowed", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_ANSWER = 64 * 1024


class AddressRefused(httpcore.ConnectError):
    """The webhook's host resolves to an address the portal must not dial."""


def parse_networks(text: str | Iterable[str] | None) -> tuple[Network, ...]:
    """``10.0.0.0/8,fd00::/8`` → networks; a :class:`ValueError` names a bad one."""
    if not text:
        return ()
    parts = text.split(",") if isinstance(text, str) else list(text)
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in parts if p.strip())


def address_allowed(address: str, allowed: Sequence[Network] = ()) -> bool:
    """Whether the portal may dial ``address`` for a webhook."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allowed):
        return True
    return ip.is_global and not ip.is_multicast


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, allowed: Sequence[Network]) -> None:
        self._allowed = tuple(allowed)
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        refused = [a for a in addresses if not address_allowed(a, self._allowed)]
        if refused or not addresses:
            raise AddressRefused(
                f"{host} resolves to {', '.join(refused) or 'nothing'}, an internal address "
                "the portal does not send webhooks to; use a public receiver, or an operator "
                "allows the network with --webhook-allow-network")
        return await self._inner.connect_tcp(addresses[0], port, timeout=timeout,
                                             local_address=local_address,
                                             socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over :class:`_GuardedBackend`; reads at most 64 KiB of an answer."""

    def __init__(self, ssl_context: ssl.SSLContext, allowed: Sequence[Network] = ()) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, network_backend=_GuardedBackend(allowed),
            max_connections=20, keepalive_expiry=5.0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                             port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw, content=request.stream,
            extensions=request.extensions)
        try:
            response = await self._pool.handle_async_request(core)
            body = b""
            try:
                async for chunk in response.aiter_stream():
                    body += chunk
                    if len(body) >= _MAX_ANSWER:
                        break
            finally:
                await response.aclose()
        except AddressRefused as exc:
            raise httpx.ConnectError(str(exc), request=request) from None
        except httpcore.TimeoutException as exc:
            raise httpx.TimeoutException(str(exc), request=request) from None
        except httpcore.NetworkError as exc:
            raise httpx.NetworkError(str(exc), request=request) from None
        except httpcore.ProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from None
        return httpx.Response(status_code=response.status, headers=response.headers,
                              content=body[:_MAX_ANSWER], extensions=response.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()
