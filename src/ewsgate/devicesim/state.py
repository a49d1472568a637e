"""What one simulated printer knows about itself: its configuration, clock and in-memory state.

A :class:`DeviceConfig` is frozen and validated once when the device starts (profile name,
identity, addresses, the knobs of the quirks). A :class:`DeviceContext` joins it with the ports
actually bound (port 0 becomes a real port), an injected :class:`Clock` and the mutable
:class:`DeviceState`: settings a technician changes (kept for the life of the process, like a
printer's RAM copy before it commits to NVRAM) and an event log the *logs* page shows.

Profiles render absolute URLs with :meth:`DeviceContext.base_url`, i.e. with the address the
device believes it has (``--advertised-host``), which on loopback is e.g. ``127.0.0.1:PORT``.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "Clock",
    "DeviceConfig",
    "DeviceContext",
    "DeviceEvent",
    "DeviceState",
    "SystemClock",
    "format_host",
    "normalise_mac",
]

_MAC = re.compile(r"^[0-9a-f]{2}([:-]?[0-9a-f]{2}){5}$")


def normalise_mac(text: str) -> str:
    """``A0-D3-C1-4A-2B-3C`` or ``a0d3c14a2b3c`` → ``a0:d3:c1:4a:2b:3c``; ValueError otherwise."""
    lowered = text.strip().lower()
    if not _MAC.match(lowered):
        raise ValueError(f"MAC {text!r} is not six hex bytes; write it like a0:d3:c1:4a:2b:3c")
    digits = lowered.replace(":", "").replace("-", "")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def format_host(host: str, port: int, default_port: int) -> str:
    """``host[:port]`` as it appears in a URL authority (IPv6 bracketed, default port omitted)."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default_port else f"{shown}:{port}"


class Clock(Protocol):
    """Time source; tests pass a fake one to expire sessions without waiting."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class SystemClock:
    """The real clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """Everything that shapes one simulated device, validated at start-up."""

    profile: str
    serial: str
    mac: str
    #: the host name or IP the device writes into absolute URLs and cookie domains
    advertised_host: str
    #: the device's own host name (e.g. ``NPI4A2B3C``), named in some absolute links
    hostname: str
    #: seconds to first byte of the slow page (legacyhttp)
    slow_seconds: float = 3.0
    #: size of the large log download (legacyhttp and the ``/logs`` download of others)
    large_log_bytes: int = 200 * 1024 * 1024
    #: idle seconds after which an admin session logs out (konica; the device's default is 10 min)
    admin_idle_seconds: float = 600.0

    def __post_init__(self) -> None:
        if not self.serial or not self.serial.isprintable() or len(self.serial) > 64:
            raise ValueError(f"serial {self.serial!r} must be 1-64 printable characters")
        if self.mac != normalise_mac(self.mac):
            raise ValueError(f"MAC {self.mac!r} must be normalised (aa:bb:cc:dd:ee:ff)")
        if self.slow_seconds < 0 or self.large_log_bytes < 0 or self.admin_idle_seconds <= 0:
            raise ValueError("slow_seconds and large_log_bytes must be >= 0, "
                             "admin_idle_seconds > 0")


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """One line of the device's event log."""

    at: float
    severity: str
    text: str


@dataclass
class DeviceState:
    """Mutable, in-memory state: settings and the event log (bounded)."""

    settings: dict[str, str] = field(default_factory=dict)
    events: deque[DeviceEvent] = field(default_factory=lambda: deque(maxlen=500))
    page_count: int = 12873

    def log(self, at: float, text: str, severity: str = "info") -> None:
        self.events.appendleft(DeviceEvent(at, severity, text))


@dataclass
class DeviceContext:
    """The running device as profiles see it: config, bound ports, clock, state."""

    config: DeviceConfig
    clock: Clock
    state: DeviceState
    http_port: int | None = None
    https_port: int | None = None
    boot_time: float = 0.0

    def base_url(self, scheme: str = "http") -> str:
        """``http://<advertised-host>[:port]`` for the listener of ``scheme`` (or the other one)."""
        host = self.config.advertised_host
        if scheme == "https" and self.https_port is not None:
            return f"https://{format_host(host, self.https_port, 443)}"
        if scheme == "http" and self.http_port is not None:
            return f"http://{format_host(host, self.http_port, 80)}"
        if self.http_port is not None:
            return f"http://{format_host(host, self.http_port, 80)}"
        if self.https_port is not None:
            return f"https://{format_host(host, self.https_port, 443)}"
        return f"{scheme}://{format_host(host, 80 if scheme == 'http' else 443, 0)}"

    def ws_url(self, scheme: str = "http") -> str:
        """The WebSocket twin of :meth:`base_url` (``ws://`` or ``wss://``)."""
        base = self.base_url(scheme)
        return "wss://" + base[8:] if base.startswith("https://") else "ws://" + base[7:]

    def log(self, text: str, severity: str = "info") -> None:
        self.state.log(self.clock.time(), text, severity)

    def uptime(self) -> float:
        return self.clock.monotonic() - self.boot_time
