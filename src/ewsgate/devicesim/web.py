"""The HTTP vocabulary the simulated EWS speaks: requests, responses, framings and a tiny router.

No sockets here. :mod:`ewsgate.devicesim.ews_server` turns bytes into :class:`Request` objects
and writes :class:`Response` objects back; profiles are plain ``async`` functions from one to the
other, so their logic reads like the device's web pages and nothing else.

A response's :class:`Framing` says how its body goes on the wire. ``STANDARD`` lets h11 frame
it correctly (``Content-Length`` for bytes, chunked for a stream to an HTTP/1.1 client). The
others break the rules on purpose, the way embedded servers in the field do:

``EOF_HTTP10``          ``HTTP/1.0`` status line, no ``Content-Length``, body ends when the
                        device closes the connection
``CHUNKED_RAW``         ``HTTP/1.1`` + ``Transfer-Encoding: chunked`` whatever the request's
                        version (chunked sent to HTTP/1.0 clients)
``LENGTH_AND_CHUNKED``  both ``Content-Length`` (the decoded size) and chunked coding
``HTTP10_CHUNKED_NO_END`` ``HTTP/1.0`` + chunked, the final ``0`` chunk never sent, then EOF
"""

from __future__ import annotations

import enum
import html
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "BodyTooLarge",
    "Framing",
    "Handler",
    "Request",
    "RequestBody",
    "Response",
    "Router",
    "WebSocket",
    "WebSocketResponse",
    "esc",
    "html_response",
    "json_response",
    "parse_cookies",
    "redirect",
    "text_response",
]


class BodyTooLarge(Exception):
    """A request body was bigger than the handler is willing to hold in memory."""


class RequestBody(Protocol):
    """The request body as it arrives: iterate for chunks, or read it whole (bounded)."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def read(self, limit: int = 1024 * 1024) -> bytes: ...


class Framing(enum.Enum):
    """How a response body is delimited on the wire (see the module docstring)."""

    STANDARD = "standard"
    EOF_HTTP10 = "eof-http10"
    CHUNKED_RAW = "chunked-raw"
    LENGTH_AND_CHUNKED = "length-and-chunked"
    HTTP10_CHUNKED_NO_END = "http10-chunked-no-end"


@dataclass
class Request:
    """One parsed request; ``headers`` have lower-case names, in arrival order."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    http_version: str
    scheme: str
    body: RequestBody
    peer: str = ""
    path: str = field(init=False)
    query: dict[str, list[str]] = field(init=False)
    cookies: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.target)
        self.path = parts.path or "/"
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.cookies = parse_cookies(self.headers_all("cookie"))

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def headers_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default

    async def form(self, limit: int = 1024 * 1024) -> dict[str, str]:
        """An ``application/x-www-form-urlencoded`` body as a dict (first value wins)."""
        raw = await self.body.read(limit)
        parsed = parse_qs(raw.decode("latin-1"), keep_blank_values=True)
        return {key: values[0] for key, values in parsed.items()}


def parse_cookies(values: list[str]) -> dict[str, str]:
    """``Cookie`` header values → name/value dict; the first occurrence of a name wins."""
    cookies: dict[str, str] = {}
    for value in values:
        for piece in value.split(";"):
            name, sep, val = piece.strip().partition("=")
            if sep and name and name not in cookies:
                cookies[name] = val.strip().strip('"')
    return cookies


Body = bytes | AsyncIterator[bytes]


@dataclass
class Response:
    """A response; ``body`` is bytes or an async iterator of chunks (streamed, never joined)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: Body = b""
    framing: Framing = Framing.STANDARD

    @property
    def reason(self) -> str:
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Unknown"


class WebSocket(Protocol):
    """An accepted WebSocket, as handlers see it."""

    async def send_text(self, text: str) -> None: ...

    async def receive(self) -> str | bytes | None:
        """The next message, or ``None`` once the peer closed."""
        ...

    async def close(self, code: int = 1000) -> None: ...


@dataclass
class WebSocketResponse:
    """Accept the request's WebSocket upgrade and run ``session`` on the connection."""

    session: Callable[[WebSocket], Awaitable[None]]
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: ``Sec-WebSocket-Accept`` in the 101: ``computed`` (RFC 6455), ``missing`` or ``wrong``
    #: (hostile devices)
    accept: str = "computed"
    #: instead of ``session``: the raw connection after the 101 (bytes already read, reader,
    #: writer), for a device that does not speak frames
    raw: Callable[[bytes, Any, Any], Awaitable[None]] | None = None


Handler = Callable[[Request], Awaitable[Response | WebSocketResponse]]


def esc(value: Any) -> str:
    """HTML-escape anything (quotes included)."""
    return html.escape(str(value), quote=True)


def html_response(text: str, status: int = 200, headers: list[tuple[str, str]] | None = None,
                  framing: Framing = Framing.STANDARD) -> Response:
    return Response(status, [("Content-Type", "text/html; charset=utf-8"), *(headers or [])],
                    text.encode("utf-8"), framing)


def text_response(text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8",
                  headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, [("Content-Type", content_type), *(headers or [])],
                    text.encode("utf-8"))


def json_response(data: Any, status: int = 200) -> Response:
    import json

    return Response(status, [("Content-Type", "application/json")],
                    json.dumps(data, indent=1).encode("utf-8"))


def redirect(location: str, status: int = 302,
             headers: list[tuple[str, str]] | None = None) -> Response:
    body = (f'<html><body>Moved <a href="{esc(location)}">here</a>.</body></html>').encode()
    return Response(status, [("Location", location), ("Content-Type", "text/html"),
                             *(headers or [])], body)


class Router:
    """Exact-path routing with method checks; unknown paths get the device's 404 page."""

    def __init__(self, not_found: Callable[[Request], Response] | None = None) -> None:
        self._routes: dict[str, tuple[tuple[str, ...], Handler]] = {}
        self._not_found = not_found

    def add(self, path: str, handler: Handler, methods: tuple[str, ...] = ("GET",)) -> None:
        allowed = (*methods, "HEAD") if "GET" in methods else methods
        self._routes[path] = (allowed, handler)

    def paths(self) -> list[str]:
        return sorted(self._routes)

    async def dispatch(self, request: Request) -> Response | WebSocketResponse:
        route = self._routes.get(request.path)
        if route is None:
            if self._not_found is not None:
                return self._not_found(request)
            return text_response(f"Not Found: {request.path}\n", 404)
        methods, handler = route
        if request.method not in methods:
            return text_response(f"Method {request.method} not allowed here\n", 405,
                                 headers=[("Allow", ", ".join(methods))])
        return await handler(request)
