"""The errors code above the tunnel sees, and the one place foreign exceptions become them.

Sockets, TLS and timeouts raise a zoo of exceptions (``OSError``, ``ssl.SSLError``,
``ConnectionResetError``, ``TimeoutError`` ...). :func:`map_exceptions` turns each into a
:class:`TunnelError` with an :class:`~ewsgate.tunnel.ErrorCode` and a message saying what to
check, so callers handle one family (the httpcore ``map_exceptions`` idea).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from ewsgate.tunnel import ErrorCode

__all__ = [
    "StreamRefusedError",
    "StreamResetError",
    "TunnelClosedError",
    "TunnelError",
    "map_exceptions",
]


class TunnelError(Exception):
    """A tunnel or stream failure: ``code`` (wire error code) and a human message."""

    def __init__(self, message: str, code: ErrorCode | int = ErrorCode.INTERNAL_ERROR) -> None:
        super().__init__(message)
        self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        name = self.code.name if isinstance(self.code, ErrorCode) else str(self.code)
        return f"{self.message} [{name}]"


class TunnelClosedError(TunnelError):
    """The tunnel connection is closed (or never got established)."""


class StreamResetError(TunnelError):
    """The stream was reset, by the peer (``remote``) or by us."""

    def __init__(self, message: str, code: ErrorCode | int, remote: bool = True) -> None:
        super().__init__(message, code)
        self.remote = remote


class StreamRefusedError(StreamResetError):
    """The agent refused to open the stream (destination refused, device unreachable...)."""


@contextmanager
def map_exceptions(what: str) -> Iterator[None]:
    """Re-raise socket/TLS/timeout failures during ``what`` as :class:`TunnelError`."""
    try:
        yield
    except TunnelError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise TunnelError(f"{what}: the peer's certificate was not accepted "
                          f"({exc.verify_message}); check the CA and the certificate's validity",
                          ErrorCode.TICKET_REFUSED) from exc
    except ssl.SSLError as exc:
        raise TunnelError(f"{what}: TLS failed ({exc.reason or exc}); check certificates, "
                          "TLS versions and that the port speaks TLS",
                          ErrorCode.CONNECT_FAILED) from exc
    except TimeoutError as exc:
        raise TunnelError(f"{what}: timed out; check that the address is reachable",
                          ErrorCode.CONNECT_FAILED) from exc
    except ConnectionRefusedError as exc:
        raise TunnelError(f"{what}: connection refused; is the service listening?",
                          ErrorCode.CONNECT_FAILED) from exc
    except (ConnectionError, EOFError) as exc:
        raise TunnelClosedError(f"{what}: the connection was closed ({exc})",
                                ErrorCode.CONNECT_FAILED) from exc
    except OSError as exc:
        raise TunnelError(f"{what}: network error ({exc.strerror or exc})",
                          ErrorCode.CONNECT_FAILED) from exc
