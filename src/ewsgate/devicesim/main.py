"""``ewsgate devicesim``: run one simulated printer until interrupted.

Resolves the flags into a :func:`~ewsgate.devicesim.device.start_device` call, prints where the
device answers (one line per listener, then ``ready``, which scripts and the demo wait for) and
serves until SIGINT or SIGTERM, then closes every listener. Exit codes: 0 after a clean stop,
2 when the configuration is wrong (the message says which flag and what to do).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from ewsgate.config import ConfigError
from ewsgate.devicesim.device import DeviceStartError, load_certificate, start_device

__all__ = ["run", "snmp_options"]

#: ``ewsgate devicesim`` flag keys → SnmpAgentConfig fields (flags the SNMP agent declares)
_SNMP_KEYS = {
    "snmp_community": "community",
    "snmp_v3_user": "v3_user",
    "snmp_v3_auth_key": "v3_auth_key",
    "snmp_v3_priv_key": "v3_priv_key",
    "snmp_v3_auth_protocol": "v3_auth_protocol",
    "snmp_v3_priv_protocol": "v3_priv_protocol",
    "snmp_if_index": "if_index",
}


def snmp_options(values: dict[str, Any]) -> dict[str, Any]:
    """The SNMP agent settings present among the resolved flags."""
    return {field: values[key] for key, field in _SNMP_KEYS.items()
            if values.get(key) is not None}


def run(values: dict[str, Any]) -> int:
    """Handler of ``ewsgate devicesim``."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s devicesim %(levelname)s %(message)s")
    if (values.get("tls_cert") is None) != (values.get("tls_key") is None):
        raise ConfigError("--tls-cert and --tls-key go together: give both or neither")
    try:
        return asyncio.run(_serve(values))
    except DeviceStartError as exc:
        print(f"ewsgate devicesim: {exc} [{exc.code}]", file=sys.stderr)
        return 2


async def _serve(values: dict[str, Any]) -> int:
    certificate = None
    if values.get("tls_cert") is not None:
        certificate = load_certificate(values["tls_cert"], values["tls_key"])
    try:
        device = await start_device(
            values.get("profile") or "hp",
            http=values.get("http"),
            https=values.get("https"),
            snmp=values.get("snmp"),
            mac=values.get("mac"),
            serial=values.get("serial"),
            advertised_host=values.get("advertised_host"),
            hostname=values.get("hostname"),
            slow_seconds=float(values.get("slow_seconds") or 3.0),
            large_log_bytes=int(values.get("large_log_mb") or 200) * 1024 * 1024,
            admin_idle_seconds=float(values.get("admin_idle_seconds") or 600.0),
            certificate=certificate,
            snmp_options=snmp_options(values),
        )
    except ValueError as exc:
        if isinstance(exc, DeviceStartError):
            raise
        code = getattr(exc, "code", "devicesim.bad_config")
        raise DeviceStartError(code, str(exc)) from None
    info = device.profile.info
    cfg = device.config
    print(f"devicesim {cfg.profile}: {info.make} {info.model} serial {cfg.serial} "
          f"mac {cfg.mac} host {cfg.hostname} advertised as {cfg.advertised_host}", flush=True)
    if device.http:
        print(f"  http   {device.url('http')}", flush=True)
    if device.https:
        print(f"  https  {device.url('https')} (TLS: {info.tls})", flush=True)
    if device.snmp:
        print(f"  snmp   udp {device.snmp}", flush=True)
    print("ready", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await device.close()
    return 0
