"""The Devices pages: the searchable list, a device's page, its Remote Technician switch and
its *Open device web page* button.

What a device page offers follows from the service layer alone:

* the switch appears when ``get_device(..., CONFIGURE_REMOTE_TECHNICIAN)`` succeeds — the
  signed-in person is a Remote Technician Configurer over the device;
* the *Open device web page* button appears when ``can_open_session`` is true — a Remote
  Technician User over the device, Remote Technician enabled, installation enabled.

Administrators add devices (``GET /devices/new``, ``POST /devices``), edit them
(``GET/POST /devices/{id}/edit``) and delete them (``POST /devices/{id}/delete``): every field
is validated by the service layer, and a refused one is shown by its field with the form
re-filled. SNMPv3 keys are never written back into a page; left empty on edit, they are kept.

``POST /devices/{id}/remote-technician`` calls ``set_remote_technician``;
``POST /devices/{id}/open`` checks ``authorize_open_session`` and, when Remote Technician is
not mounted on the application, answers with a page that says so.

*Verify identity* (``POST /devices/{id}/verify-identity``) is offered, in the portal application
(which has a control server), to those whose roles act on the device (``VERIFY_ACTIONS``:
Administrator, Configurer, User). It runs ``verify_device_identity`` through the
installation's control stream; the outcome is stored on the device and shown on its page. An
offline installation or a timeout is shown as an error on the device page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from ewsgate.portal.services import device_pins
from ewsgate.portal.services import devices as device_service
from ewsgate.portal.services import jobs as job_service
from ewsgate.portal.services import policies as policy_service
from ewsgate.portal.services.access import Action, load_tree
from ewsgate.portal.services.device_identity import VERIFY_ACTIONS, verify_device_identity
from ewsgate.portal.services.errors import (
    InvalidInput,
    NotFound,
    PermissionDenied,
    ServiceError,
)
from ewsgate.portal.store.models import DEVICE_MAKES, Device
from ewsgate.portal.ui.lookups import load_directory
from ewsgate.portal.ui.rendering import make_label
from ewsgate.portal.ui.web import Page, PageError, page

__all__ = ["ContextHub", "create_device", "delete_device", "device_detail", "device_list",
           "edit_device", "new_device", "open_device", "reset_identity_pins",
           "set_remote_technician", "update_device", "verify_identity"]

#: The add-device form's fields, in the names ``create_device`` takes.
DEVICE_FORM_FIELDS = (
    "installation_id", "name", "make", "model", "ip", "hostname", "ews_endpoints",
    "identity_method", "mac", "serial", "snmp_version", "snmp_port", "snmp_community",
    "snmp_v3_user", "snmp_v3_auth_protocol", "snmp_v3_auth_key", "snmp_v3_priv_protocol",
    "snmp_v3_priv_key")
_REQUIRED = frozenset({"installation_id", "name", "ip"})
_SECRETS = frozenset({"snmp_v3_auth_key", "snmp_v3_priv_key"})
_NEW_DEVICE = {**dict.fromkeys(DEVICE_FORM_FIELDS, ""), "make": "other",
               "ews_endpoints": "http:80", "identity_method": "mac", "snmp_version": "2c",
               "snmp_port": "161", "snmp_community": "public"}


class ContextHub:
    """The control hub of the portal's control server, looked up among the portal's background
    services when a command is sent (the control server joins them after the app is built)."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx

    async def send_command(self, installation_id: int, kind: str, payload: Any = None, *,
                           timeout: float = 30.0) -> dict[str, Any]:  # noqa: ASYNC109
        control = next((s for s in self._ctx.background if hasattr(s, "hub")), None)
        if control is None:
            from ewsgate.portal.control.hub import InstallationOffline

            raise InstallationOffline("this portal runs without its control server, so no "
                                      "installation can be reached")
        result: dict[str, Any] = await control.hub.send_command(installation_id, kind, payload,
                                                                timeout=timeout)
        return result


def _command_sender(p: Page) -> ContextHub | None:
    """Commands reach installations only in the portal application (``create_app``)."""
    ctx = getattr(p.request.app.state, "portal", None)
    return ContextHub(ctx) if ctx is not None else None


#: What the device page says after a change to the device (``?done=…``).
DEVICE_NOTICES = {
    "device-saved": "The device was saved.",
    "identity-verified": "Identity verified: the device at this IP is the one on record.",
    "identity-mismatch": "Identity mismatch: another device answers at this IP. Remote sessions "
                         "to it fail closed until the record or the network is corrected.",
    "identity-unknown": "The identity could not be established; the detail is below.",
    "pins-reset": "The identity pins were reset; the next verified session pins what it sees.",
}


@dataclass(frozen=True)
class DeviceFilters:
    """The list's filters as the form shows them (ids as ints, flags as ``on``/``off``)."""

    q: str = ""
    customer: int | None = None
    installation: int | None = None
    make: str = ""
    rt: str = ""

    @property
    def active(self) -> bool:
        return bool(self.q or self.customer or self.installation or self.make or self.rt)

    def for_service(self) -> device_service.DeviceFilter:
        return device_service.DeviceFilter(
            search=self.q or None, customer_id=self.customer,
            installation_id=self.installation, make=self.make or None,
            remote_technician_enabled={"on": True, "off": False}.get(self.rt))


@dataclass(frozen=True)
class DeviceRow:
    device: Device
    customer_name: str
    installation_name: str
    online: bool


def _int_param(p: Page, name: str) -> int | None:
    raw = p.request.query_params.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 10:
        raise InvalidInput(f"{name} must be a number (an id from the list), not {raw[:20]!r}",
                           field=name)
    return int(raw)


def _filters(p: Page) -> DeviceFilters:
    params = p.request.query_params
    make = params.get("make", "").strip().lower()
    if make and make not in DEVICE_MAKES:
        raise InvalidInput(f"make {make[:20]!r} is not one of {', '.join(DEVICE_MAKES)}",
                           field="make")
    rt = params.get("rt", "").strip().lower()
    if rt not in ("", "on", "off"):
        raise InvalidInput("Remote Technician filter must be on or off", field="rt")
    return DeviceFilters(q=params.get("q", "").strip()[:200], customer=_int_param(p, "customer"),
                         installation=_int_param(p, "installation"), make=make, rt=rt)


@page
async def device_list(p: Page) -> Response:
    """``GET /devices``: the devices the signed-in person can see, filtered."""
    error = None
    try:
        filters = _filters(p)
    except InvalidInput as exc:
        filters, error = DeviceFilters(), PageError.of(exc)
    async with p.transaction() as session:
        directory = await load_directory(session, p.actor)
        devices = await device_service.list_devices(session, p.actor, filters.for_service())
    rows = [DeviceRow(d, directory.customer_label(directory.customer_of_installation(
        d.installation_id)), directory.installation_name(d.installation_id),
        directory.installation_online(d.installation_id)) for d in devices]
    return p.render("devices/list.html", "devices", {
        "title": "Devices", "rows": rows, "filters": filters, "filtered": filters.active,
        "customer_options": directory.customer_options(),
        "installation_options": directory.installation_options(),
        "make_options": DEVICE_MAKES, "error": error,
        "can_admin": p.actor.can_anywhere(Action.MANAGE_INVENTORY),
    }, status_code=422 if error else 200)


async def _device_form_page(p: Page, form: dict[str, str], *, device: Device | None = None,
                            error: PageError | None = None,
                            status_code: int = 200) -> Response:
    async with p.transaction() as session:
        directory = await load_directory(session, p.actor)
    return p.render("devices/form.html", "devices", {
        "title": f"Edit {device.name}" if device else "Add a device", "form": form,
        "error": error, "device": device,
        "action": f"/devices/{device.id}/edit" if device else "/devices",
        "installation_choices": [(o.id, o.label) for o in directory.installation_options()],
        "make_choices": [(m, make_label(m)) for m in DEVICE_MAKES],
    }, status_code=status_code)


@page
async def new_device(p: Page) -> Response:
    """``GET /devices/new``: the add-device form (Administrators)."""
    if not p.actor.can_anywhere(Action.MANAGE_INVENTORY):
        return p.failure(PermissionDenied("only an administrator can add devices"))
    return await _device_form_page(p, dict(_NEW_DEVICE))


@page
async def create_device(p: Page) -> Response:
    """``POST /devices``: add a device; the service layer validates every field."""
    form = {name: p.field(name) for name in DEVICE_FORM_FIELDS}
    values = {k: v for k, v in form.items() if v or k in _REQUIRED}
    try:
        async with p.transaction() as session:
            device = await device_service.create_device(session, p.actor, values,
                                                        clock=p.ui.config.clock)
            device_id = device.id
    except ServiceError as exc:
        return await _device_form_page(p, form, status_code=exc.status,
                                       error=PageError.of(exc, frozenset(DEVICE_FORM_FIELDS)))
    return p.redirect(f"/devices/{device_id}", "device-created")


def _form_of(device: Device) -> dict[str, str]:
    """A device as the form shows it (secrets left out)."""
    endpoints = ", ".join(f"{e.get('scheme')}:{e.get('port')}"
                          for e in device.ews_endpoints or [] if isinstance(e, dict))
    form = {name: "" if getattr(device, name, None) is None else str(getattr(device, name))
            for name in DEVICE_FORM_FIELDS if name not in _SECRETS}
    return {**form, "ews_endpoints": endpoints, **dict.fromkeys(_SECRETS, "")}


@page
async def edit_device(p: Page, device_id: int) -> Response:
    """``GET /devices/{id}/edit``: the device form, filled (Administrators of the device)."""
    try:
        async with p.transaction() as session:
            device = await device_service.get_device(session, p.actor, device_id,
                                                     Action.MANAGE_INVENTORY)
    except ServiceError as exc:
        return p.failure(exc)
    return await _device_form_page(p, _form_of(device), device=device)


@page
async def update_device(p: Page, device_id: int) -> Response:
    """``POST /devices/{id}/edit``: save every field; empty SNMPv3 keys are kept as stored."""
    form = {name: p.field(name) for name in DEVICE_FORM_FIELDS}
    changes = {k: v for k, v in form.items() if k not in _SECRETS or v}
    try:
        async with p.transaction() as session:
            await device_service.update_device(session, p.actor, device_id, changes,
                                               clock=p.ui.config.clock)
    except ServiceError as exc:
        if exc.status == 404:
            return p.failure(exc)
        async with p.transaction() as session:
            device = await device_service.get_device(session, p.actor, device_id)
        return await _device_form_page(p, {**form, **dict.fromkeys(_SECRETS, "")},
                                       device=device, status_code=exc.status,
                                       error=PageError.of(exc, frozenset(DEVICE_FORM_FIELDS)))
    return p.redirect(f"/devices/{device_id}", "device-saved")


@page
async def delete_device(p: Page, device_id: int) -> Response:
    """``POST /devices/{id}/delete``: remove the device (its jobs stay)."""
    try:
        async with p.transaction() as session:
            await device_service.delete_device(session, p.actor, device_id,
                                               clock=p.ui.config.clock)
    except ServiceError as exc:
        if exc.status == 404:
            return p.failure(exc)
        return await _device_page(p, device_id, error=PageError.of(exc),
                                  status_code=exc.status)
    return p.redirect("/devices", "device-deleted")


async def _device_page(p: Page, device_id: int, *, error: PageError | None = None,
                       status_code: int = 200) -> Response:
    try:
        async with p.transaction() as session:
            device = await device_service.get_device(session, p.actor, device_id)
            try:
                await device_service.get_device(session, p.actor, device_id,
                                                Action.CONFIGURE_REMOTE_TECHNICIAN)
                can_configure = True
            except PermissionDenied:
                can_configure = False
            try:
                await device_service.get_device(session, p.actor, device_id,
                                                Action.OPEN_SESSION)
                is_rt_user = True
            except PermissionDenied:
                is_rt_user = False
            can_open = await device_service.can_open_session(session, p.actor, device_id)
            try:
                await device_service.get_device(session, p.actor, device_id,
                                                Action.MANAGE_INVENTORY)
                can_manage = True
            except PermissionDenied:
                can_manage = False
            can_verify = False
            if _command_sender(p) is not None:
                for action in VERIFY_ACTIONS:
                    try:
                        await device_service.get_device(session, p.actor, device_id, action)
                    except PermissionDenied:
                        continue
                    can_verify = True
                    break
            directory = await load_directory(session, p.actor)
            pin_events = await device_pins.pin_events(session, p.actor, device_id, limit=5)
            jobs = await job_service.list_jobs(session, p.actor,
                                               job_service.JobFilter(device_id=device.id),
                                               limit=5)
            policy = (await policy_service.effective_for_customer(
                session, await device_service.device_customer_id(session, device),
                await load_tree(session, p.actor.dealer_id))).as_json()
    except ServiceError as exc:
        return p.failure(exc)
    customer_id = directory.customer_of_installation(device.installation_id)
    done = p.request.query_params.get("done", "")
    device_notice = {"notice": DEVICE_NOTICES[done]} if done in DEVICE_NOTICES else {}
    return p.render("devices/detail.html", "devices", {
        "title": device.name, "device": device,
        "customer_name": directory.customer_label(customer_id),
        "installation_name": directory.installation_name(device.installation_id),
        "installation_online": directory.installation_online(device.installation_id),
        "can_configure": can_configure, "is_rt_user": is_rt_user, "can_open": can_open,
        "can_verify": can_verify, "can_manage": can_manage, "jobs": jobs, "error": error,
        "strength": device_pins.identity_strength(device), "pin_events": pin_events,
        "policy": policy, **device_notice,
    }, status_code=status_code)


@page
async def device_detail(p: Page, device_id: int) -> Response:
    """``GET /devices/{id}``: facts, the Remote Technician panel, recent jobs."""
    return await _device_page(p, device_id)


@page
async def set_remote_technician(p: Page, device_id: int) -> Response:
    """``POST /devices/{id}/remote-technician`` (``enabled=true|false``): Configurers only."""
    enabled = p.field("enabled")
    try:
        async with p.transaction() as session:
            device = await device_service.set_remote_technician(
                session, p.actor, device_id, enabled, clock=p.ui.config.clock)
    except ServiceError as exc:
        if exc.status == 404:
            return p.failure(exc)
        return await _device_page(p, device_id, error=PageError.of(exc),
                                  status_code=exc.status)
    return p.redirect(f"/devices/{device_id}",
                      "rt-on" if device.remote_technician_enabled else "rt-off")


@page
async def open_device(p: Page, device_id: int) -> Response:
    """``POST /devices/{id}/open``: the *Open device web page* button."""
    try:
        async with p.transaction() as session:
            device = await device_service.authorize_open_session(session, p.actor, device_id)
    except ServiceError as exc:
        if exc.status == 404:
            return p.failure(exc)
        return await _device_page(p, device_id, error=PageError.of(exc),
                                  status_code=exc.status)
    return p.ui.message(
        p.request, title="Remote sessions are not available yet",
        message=f"You may open {device.name}'s web page, but this portal cannot start Remote "
        "Technician sessions yet. Nothing was started and no job was created.",
        status_code=501, actor=p.actor, csrf_token=p.session_info.csrf_token,
        back_href=f"/devices/{device_id}", back_label="Back to the device")




@page
async def reset_identity_pins(p: Page, device_id: int) -> Response:
    """``POST /devices/{id}/identity-pins/reset``: an Administrator forgets the pins."""
    try:
        async with p.transaction() as session:
            await device_pins.reset_pins(session, p.actor, device_id, clock=p.ui.config.clock)
    except ServiceError as exc:
        if exc.status == 404:
            return p.failure(exc)
        return await _device_page(p, device_id, error=PageError.of(exc),
                                  status_code=exc.status)
    return p.redirect(f"/devices/{device_id}", "pins-reset")


@page
async def verify_identity(p: Page, device_id: int) -> Response:
    """``POST /devices/{id}/verify-identity``: ask the installation to check the device."""
    sender = _command_sender(p)
    if sender is None:
        return p.failure(NotFound("identity checks need the portal's control server, which "
                                  "this application does not run"))
    try:
        answer = await verify_device_identity(p.ui.database, p.actor, device_id,
                                              sender,  # type: ignore[arg-type]
                                              clock=p.ui.config.clock)
    except ServiceError as exc:
        if exc.status == 404:
            return p.failure(exc)
        return await _device_page(p, device_id, error=PageError.of(exc),
                                  status_code=exc.status)
    result = str(answer["result"])
    return p.redirect(f"/devices/{device_id}",
                      f"identity-{result if result in ('verified', 'mismatch') else 'unknown'}")
