"""Shipping the Remote Technician Log to the portal: the one HTTP call of the spool.

The contract (endpoint, authentication, body) is in ``docs/relay.md``; the spool and its
supervised shipping loop are in :mod:`ewsgate.relay.access_log`, which re-exports these names.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, Protocol

import httpx

from ewsgate.relay.portal_http import portal_client

__all__ = ["LOG_BATCHES_PATH", "LogShipper", "PortalLogShipper", "ShipError"]

LOG_BATCHES_PATH = "/api/v1/relay/log-batches"


class ShipError(Exception):
    """The portal did not take a batch; it will be retried."""

    code = "log_ship_failed"


class LogShipper(Protocol):
    """Delivers a batch of entries to the portal; raises :class:`ShipError` on failure."""

    async def ship(self, entries: Sequence[dict[str, Any]]) -> None: ...


class PortalLogShipper:
    """POSTs batches to the portal's log-batch endpoint with the relay's credentials."""

    def __init__(self, portal_url: str, relay_id: str, relay_secret: str, *,
                 verify: Any = True, timeout: float = 10.0) -> None:
        self.url = portal_url.rstrip("/") + LOG_BATCHES_PATH
        self.relay_id = relay_id
        token = base64.b64encode(f"{relay_id}:{relay_secret}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}"}
        self._client = portal_client(verify=verify, timeout=timeout)

    async def ship(self, entries: Sequence[dict[str, Any]]) -> None:
        try:
            response = await self._client.post(
                self.url, json={"relay_id": self.relay_id, "entries": list(entries)},
                headers=self._headers)
        except httpx.HTTPError as exc:
            raise ShipError(f"cannot reach the portal at {self.url}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise ShipError(f"the portal answered {response.status_code} to a log batch: "
                            f"{response.text[:300]}")

    async def aclose(self) -> None:
        await self._client.aclose()
