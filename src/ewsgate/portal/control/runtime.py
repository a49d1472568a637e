"""Starting the control server from the portal's flags (what ``ewsgate portal`` calls).

::

    ca = load_portal_ca(values["data_dir"], values.get("ca_cert"), values.get("ca_key"))
    server = control_server_from_values(values, database=db, ca=ca, clock=utc_now)
    await server.start()            # in the portal's startup hook
    app.state.control = server      # server.hub.send_command(...) for the services
    await server.stop()             # in the shutdown hook

The CA lives in ``DATA_DIR/ca/ca.crt`` and ``DATA_DIR/ca/ca.key`` (mode 0600), created on first
start, unless ``--ca-cert``/``--ca-key`` name existing files (both, or neither).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ewsgate import pki
from ewsgate.config import ConfigError, HostPort
from ewsgate.portal.control.hub import InstallationOffline, ProgressCallback
from ewsgate.portal.control.server import ControlServer, ControlServerConfig
from ewsgate.portal.store.db import Database

__all__ = ["LateHub", "control_config_from_values", "control_server_from_values",
           "control_service", "cut_installation", "display_enrolment_token",
           "enrolment_address", "hub_of",
           "load_portal_ca", "public_enrolment_address"]


def load_portal_ca(data_dir: Path, ca_cert: Path | None = None, ca_key: Path | None = None, *,
                   now: dt.datetime | None = None) -> pki.CertificateAuthority:
    """The portal's CA: from ``--ca-cert``/``--ca-key``, else created/loaded in the data dir."""
    try:
        if ca_cert is not None or ca_key is not None:
            if ca_cert is None or ca_key is None:
                raise ConfigError("--ca-cert and --ca-key go together: give both or neither")
            return pki.load_ca(ca_cert, ca_key)
        return pki.load_or_create_ca(data_dir / "ca" / "ca.crt", data_dir / "ca" / "ca.key",
                                     now=now or dt.datetime.now(dt.UTC))
    except pki.PkiError as exc:
        raise ConfigError(f"the portal's CA: {exc}") from None


def enrolment_address(values: Mapping[str, Any]) -> HostPort:
    """``--enrol-listen``, else the ``--grpc-listen`` host with the port after it."""
    if values.get("enrol_listen") is not None:
        enrol: HostPort = values["enrol_listen"]
        return enrol
    grpc_listen: HostPort = values["grpc_listen"]
    return HostPort(grpc_listen.host, grpc_listen.port + 1 if grpc_listen.port else 0)


def control_config_from_values(values: Mapping[str, Any]) -> ControlServerConfig:
    """The control server's configuration from the resolved ``ewsgate portal`` flags."""
    advertise = values.get("grpc_advertise")
    names: list[str] = []
    public_url = values.get("public_url")
    if public_url:
        from urllib.parse import urlsplit

        host = urlsplit(public_url).hostname
        if host:
            names.append(host)
    return ControlServerConfig(listen=str(values["grpc_listen"]),
                               enrol_listen=str(enrolment_address(values)),
                               advertise=str(advertise) if advertise else "",
                               server_names=tuple(names))


def control_server_from_values(values: Mapping[str, Any], *, database: Database,
                               ca: pki.CertificateAuthority,
                               clock: Callable[[], dt.datetime]) -> ControlServer:
    return ControlServer(control_config_from_values(values), database=database, ca=ca,
                         clock=clock)


def control_service(ctx: Any) -> ControlServer:
    """The portal's control server as a background service of ``ewsgate portal``.

    ``ctx`` is the :class:`~ewsgate.portal.context.PortalContext`; its config's flag values
    give the listen addresses and the CA paths.
    """
    values = ctx.config.values
    ca = load_portal_ca(ctx.config.data_dir, values.get("ca_cert"), values.get("ca_key"))
    return control_server_from_values(values, database=ctx.database, ca=ca, clock=ctx.clock)


def _control_of(ctx: Any) -> ControlServer | None:
    return next((s for s in getattr(ctx, "background", ()) if isinstance(s, ControlServer)),
                None)


def display_enrolment_token(ctx: Any, secret: str) -> str:
    """The token to show an administrator: ``<secret>.<ca-pin>`` (the agent needs the pin).

    Without a control server in this process (tests, UI-only runs) the CA is read from the
    data directory when it exists; otherwise the bare secret is returned.
    """
    control = _control_of(ctx)
    ca_cert = control.ca.cert if control is not None else None
    if ca_cert is None:
        values = ctx.config.values
        path = values.get("ca_cert") or ctx.config.data_dir / "ca" / "ca.crt"
        try:
            ca_cert = pki.cert_from_pem(Path(path).read_bytes())
        except (OSError, pki.PkiError):
            return secret
    return pki.compose_enrolment_token(secret, ca_cert)


def public_enrolment_address(ctx: Any) -> str:
    """``HOST:PORT`` for ``ewsgate agent enroll --portal``: the enrolment port, on the host
    browsers use (``--public-url``) when the listener is bound to every interface."""
    address = enrolment_address(ctx.config.values or {"grpc_listen": ctx.config.grpc_listen})
    control = _control_of(ctx)
    port = control.enrol_port if control is not None and control.enrol_port else address.port
    host = address.host
    if host in ("0.0.0.0", "::", ""):
        from urllib.parse import urlsplit

        host = urlsplit(ctx.config.public_url).hostname or host
    return str(HostPort(host, port))


class LateHub:
    """``send_command`` on the control server among ``ctx.background``, looked up per call.

    The control server joins the background services after the app is built, so routes and
    pages hold one of these instead of the hub itself.
    """

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx

    async def send_command(self, installation_id: int, kind: str,
                           payload: Mapping[str, Any] | None = None, *,
                           timeout: float = 30.0,  # noqa: ASYNC109 (the command's deadline)
                           on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        from ewsgate.portal.control.routing import router_of

        router = router_of(self._ctx)
        if router is not None:  # in process, or to the replica holding the stream
            return await router.send_command(installation_id, kind, payload, timeout=timeout,
                                             on_progress=on_progress)
        control = _control_of(self._ctx)
        if control is None:
            raise InstallationOffline("this portal process runs without its control server, "
                                      "so no installation can be reached")
        return await control.hub.send_command(installation_id, kind, payload, timeout=timeout,
                                              on_progress=on_progress)


def hub_of(ctx: Any) -> LateHub:
    """A :class:`LateHub` for the portal context ``ctx``."""
    return LateHub(ctx)


def cut_installation(ctx: Any, installation_id: int, reason: str) -> bool:
    """Cut the installation's live control stream now (after deleting or disabling it).

    The control server's sweep would do it within ``db_sweep_interval`` anyway; this makes it
    immediate when the change is made through this portal process.
    """
    control = _control_of(ctx)
    return control.hub.disconnect(installation_id, reason) if control is not None else False
