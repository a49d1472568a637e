"""``ewsgate agent enroll`` and ``ewsgate agent run``: the CLI handlers of the installation.

``enroll(values)`` exchanges the one-time token for a certificate (:mod:`.enroll`) and saves it
in ``--data-dir``; ``run(values)`` loads that identity and keeps the control stream up
(:mod:`.control_client`) with the command handlers of :mod:`.commands` and the tunnel's
``OpenSession``/``CloseSession`` (:mod:`.session_commands` over a ``TunnelClient``) until
SIGINT/SIGTERM.
Both take the resolved flag values and return an exit code (0 ok, 1 failed, 2 bad usage).
``run`` runs on uvloop when it is installed (see :func:`_loop_factory`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from ewsgate import __version__
from ewsgate.agent.proxy import ProxyConfig, resolve_proxy
from ewsgate.agent.state import AgentState, StateError

__all__ = ["enroll", "run"]

log = logging.getLogger("ewsgate.agent")


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _proxy(flag: str | None, host: str) -> ProxyConfig | None:
    try:
        return resolve_proxy(flag, host)
    except ValueError as exc:
        from ewsgate.config import ConfigError

        raise ConfigError(f"--proxy / HTTPS_PROXY: {exc}") from None


def enroll(values: dict[str, Any]) -> int:
    """Enrol with ``--portal`` (the portal's enrolment port) using ``--token``."""
    from ewsgate.agent.enroll import EnrolError, EnrolOptions
    from ewsgate.agent.enroll import enroll as do_enroll

    _logging()
    portal = values["portal"]
    options = EnrolOptions(portal=portal, token=values["token"], agent_version=__version__,
                           proxy=_proxy(values.get("proxy"), portal.host))
    state = AgentState(values["data_dir"])
    try:
        identity = asyncio.run(do_enroll(options, state))
    except EnrolError as exc:
        print(f"ewsgate agent enroll: {exc.code}: {exc}", file=sys.stderr)
        return 1
    if values.get("portal_addresses"):  # every replica, for failover (see agent run)
        state.save_control_addresses(list(values["portal_addresses"]))
    print(f"enrolled as installation {identity.installation_id}; certificate "
          f"{identity.serial} valid until {identity.not_after:%Y-%m-%d %H:%M} UTC; "
          f"control server {identity.control_address}; data in {state.data_dir}")
    return 0


async def _run(state: AgentState, proxy_flag: str | None, *,
               site_subnets: tuple[Any, ...] = (),
               allow_loopback_devices: bool = False, max_device_connections: int = 32,
               reverify_after: float = 300.0,
               portal_addresses: tuple[Any, ...] = ()) -> int:
    from ewsgate.agent.address_policy import ALLOW_LOOPBACK_FOR_TESTS, AddressPolicy
    from ewsgate.agent.commands import default_handlers
    from ewsgate.agent.control_client import ClientConfig, ControlClient
    from ewsgate.agent.dialer import DialPolicy
    from ewsgate.agent.session_commands import session_handlers
    from ewsgate.agent.tunnel_client import TunnelClient, TunnelClientConfig

    if portal_addresses:  # remembered: later runs dial the same replicas
        state.save_control_addresses(list(portal_addresses))
    identity = state.load()
    # one policy for every packet toward a device: identity check, priming, device dials
    addresses = AddressPolicy(site_subnets=site_subnets,
                              allow_loopback=ALLOW_LOOPBACK_FOR_TESTS
                              if allow_loopback_devices else None)
    config = ClientConfig(agent_version=__version__,
                          proxy=_proxy(proxy_flag, identity.control_address.host))
    # the relays' certificates come from the portal's CA, as does ours
    tunnels = TunnelClient(TunnelClientConfig(
        cert_file=state.cert_path, key_file=state.key_path, relay_ca_file=state.ca_path,
        proxy=config.proxy.url if config.proxy else None,
        dial_policy=DialPolicy(addresses=addresses),
        max_device_connections=max_device_connections),
        reporter=lambda report: client.send_tunnel_report(
            session_id=report.session_id, kind=report.kind, code=report.code,
            detail=report.detail, count=report.count, budget=report.budget))
    if allow_loopback_devices:
        log.warning("devices on loopback addresses may be dialled (one-machine demo entry): "
                    "a one-machine demo or test set-up, never a site")

    def reload_tunnel_credentials() -> None:
        """After a renewal the next tunnel must present the new certificate."""
        reload = getattr(tunnels, "reload_credentials", None)
        if reload is not None:
            reload()
        else:
            tunnels._ssl = None  # rebuilt from the renewed files on next use

    def report(session_id: str, code: str, detail: str) -> None:
        client.report_session_failed(session_id, code, detail)

    handlers = default_handlers(
        extra=session_handlers(tunnels, address_policy=addresses,
                               reverify_after=reverify_after, report=report),
        address_policy=addresses)
    client = ControlClient(state, handlers, config, on_renewed=reload_tunnel_credentials)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, client.stop)
    if site_subnets:
        log.info("site subnets: %s (nothing outside them is reached)",
                 ", ".join(str(net) for net in site_subnets))
    log.info("installation %s: connecting to %s%s", identity.installation_id,
             ", ".join(str(a) for a in identity.portal_addresses),
             f" via proxy {config.proxy}" if config.proxy else "")
    try:
        await client.run()
    finally:
        await tunnels.close()
    return 0


def run(values: dict[str, Any], *, allow_loopback_devices: bool = False) -> int:
    """Keep the control stream up until SIGINT/SIGTERM.

    ``allow_loopback_devices`` is deliberately not a flag, variable or config key: only the
    one-machine demo's own entry point (:mod:`ewsgate.agent.loopback_demo`) sets it.
    """
    _logging()
    state = AgentState(values["data_dir"])
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(_run(state, values.get("proxy"),
                                   site_subnets=tuple(values.get("site_subnets") or ()),
                                   allow_loopback_devices=allow_loopback_devices,
                                   max_device_connections=int(
                                       values.get("max_device_connections") or 32),
                                   reverify_after=_reverify_after(values),
                                   portal_addresses=tuple(values.get("portal_addresses")
                                                          or ())))
    except StateError as exc:
        print(f"ewsgate agent run: {exc.code}: {exc}", file=sys.stderr)
        return 1


def _reverify_after(values: dict[str, Any]) -> float:
    from ewsgate.config import ConfigError

    seconds = float(values.get("reverify_after") or 300.0)
    if not 1.0 <= seconds <= 3600.0:
        raise ConfigError(f"--reverify-after {seconds:g}: use 1 to 3600 seconds")
    return seconds


def _loop_factory() -> Any:
    """uvloop's event loop when installed, else the standard one.

    Every byte of a session passes the agent twice (tunnel TLS ⇄ device socket); uvloop's
    transports and TLS cost less CPU per read and write than the standard library's, with the
    same asyncio API (gRPC's asyncio client runs on it as well).
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return None
    return uvloop.new_event_loop
