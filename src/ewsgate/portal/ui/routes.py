"""The UI's URL map and :func:`mount_ui`, the one call the portal's ``create_app`` makes.

Every page route is registered with ``include_in_schema=False`` so the OpenAPI document stays
the REST API's alone. ``/static`` serves the stylesheet, the script and the images from the
package (no CDN: the CSP allows only ``'self'``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from ewsgate.portal.sessions import pages as session_pages
from ewsgate.portal.ui import audit, devices, inventory, jobs, login, people, policy_pages
from ewsgate.portal.ui.rendering import STATIC_DIR
from ewsgate.portal.ui.web import PortalUI, UIConfig

__all__ = ["ROUTES", "mount_ui"]


async def home(request: Request) -> Response:
    """``GET /``: the device list is the portal's home."""
    return RedirectResponse("/devices", status_code=303)


async def account_home(request: Request) -> Response:
    """``GET /account``: the account page lives with the tokens."""
    return RedirectResponse("/account/tokens", status_code=303)


Endpoint = Callable[[Request], Awaitable[Response]]

#: (path, endpoint, methods)
ROUTES: list[tuple[str, Endpoint, list[str]]] = [
    ("/", home, ["GET"]),
    ("/login", login.login_form, ["GET"]),
    ("/login", login.login_submit, ["POST"]),
    ("/logout", login.logout, ["POST"]),
    ("/devices", devices.device_list, ["GET"]),
    ("/devices", devices.create_device, ["POST"]),
    ("/devices/new", devices.new_device, ["GET"]),
    ("/devices/{device_id:int}", devices.device_detail, ["GET"]),
    ("/devices/{device_id:int}/remote-technician", devices.set_remote_technician, ["POST"]),
    ("/devices/{device_id:int}/verify-identity", devices.verify_identity, ["POST"]),
    ("/devices/{device_id:int}/identity-pins/reset", devices.reset_identity_pins, ["POST"]),
    ("/devices/{device_id:int}/edit", devices.edit_device, ["GET"]),
    ("/devices/{device_id:int}/edit", devices.update_device, ["POST"]),
    ("/devices/{device_id:int}/delete", devices.delete_device, ["POST"]),
    ("/devices/{device_id:int}/open", session_pages.open_device, ["POST"]),
    ("/installations", inventory.installation_list, ["GET"]),
    ("/installations", inventory.create_installation, ["POST"]),
    ("/installations/{installation_id:int}/site-subnets", inventory.set_site_subnets, ["POST"]),
    ("/installations/{installation_id:int}/enrolment-token", inventory.create_enrolment_token,
     ["POST"]),
    ("/customers", inventory.customer_list, ["GET"]),
    ("/customers", inventory.create_customer, ["POST"]),
    ("/customers/{customer_id:int}", inventory.customer_detail, ["GET"]),
    ("/customers/{customer_id:int}", inventory.update_customer, ["POST"]),
    ("/customers/{customer_id:int}/delete", inventory.delete_customer, ["POST"]),
    ("/customers/{customer_id:int}/policy", policy_pages.customer_policy, ["GET"]),
    ("/customers/{customer_id:int}/policy", policy_pages.update_customer_policy, ["POST"]),
    ("/users", people.user_list, ["GET"]),
    ("/users", people.create_user, ["POST"]),
    ("/users/{user_id:int}", people.user_detail, ["GET"]),
    ("/users/{user_id:int}", people.update_user, ["POST"]),
    ("/users/{user_id:int}/delete", people.delete_user, ["POST"]),
    ("/users/{user_id:int}/roles", people.add_role, ["POST"]),
    ("/users/{user_id:int}/roles/{assignment_id:int}/delete", people.remove_role, ["POST"]),
    ("/account", account_home, ["GET"]),
    ("/account/profile", people.update_profile, ["POST"]),
    ("/account/tokens", people.api_tokens, ["GET"]),
    ("/account/tokens", people.create_api_token, ["POST"]),
    ("/account/tokens/{token_id:int}/revoke", people.revoke_api_token, ["POST"]),
    ("/jobs", jobs.job_list, ["GET"]),
    ("/jobs/{job_id:int}", jobs.job_detail, ["GET"]),
    ("/audit", audit.audit_list, ["GET"]),
]


def mount_ui(app: Any, config: UIConfig) -> PortalUI:
    """Add the web UI's pages and ``/static`` to ``app`` (a FastAPI or Starlette app)."""
    ui = PortalUI(config)
    app.state.ewsgate_ui = ui
    for path, endpoint, methods in ROUTES:
        app.add_route(path, endpoint, methods=methods, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return ui
