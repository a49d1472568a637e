"""The TLS server name (SNI) each browser connection asked for.

A request the relay refuses before it could parse a ``Host`` header (a malformed head, a head
too large) still belongs in the log of the session the browser was talking to, and the TLS
handshake already named it. Python's server-side ``SSLObject`` does not keep the name, so
:meth:`ServerNames.install` sets the context's ``sni_callback`` to remember it per connection
(weakly: the entry goes with the connection).
"""

from __future__ import annotations

import ssl
import weakref
from typing import Any

__all__ = ["ServerNames"]


class ServerNames:
    """Remembers the server name of each TLS connection accepted with an installed context."""

    def __init__(self) -> None:
        self._names: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

    def install(self, context: ssl.SSLContext) -> None:
        """Record names for connections accepted with ``context`` (keeps any earlier callback)."""
        previous: Any = context.sni_callback

        def remember(ssl_object: Any, server_name: str | None,
                     ctx: ssl.SSLContext) -> int | None:
            if server_name:
                self._names[ssl_object] = server_name
            if previous is None:
                return None
            result: int | None = previous(ssl_object, server_name, ctx)
            return result

        context.sni_callback = remember

    def name_of(self, ssl_object: Any) -> str | None:
        """The server name the connection's ``ssl_object`` was opened for, if any."""
        if ssl_object is None:
            return None
        try:
            return self._names.get(ssl_object)
        except TypeError:  # not weak-referenceable: never recorded
            return None
