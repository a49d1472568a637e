"""The portal's server-rendered web UI: HTML pages over the same service layer as the API.

::

    browser ──GET/POST──▶ ui.web.page (cookie → Actor, CSRF, Origin)
                              │
                              ▼
                       ui.<section> handler ──▶ services.* (roles, scopes, validation)
                              │                        │
                              ▼                        ▼
                       ui.rendering (Jinja2, autoescape)   store (one transaction per change)

Sections: :mod:`.login` (sign in/out), :mod:`.devices`, :mod:`.inventory` (installations,
customers), :mod:`.people` (users & roles, API tokens), :mod:`.jobs`. :func:`mount_ui` adds
them to the portal's application with ``/static``; pages carry no inline script or style, so
the portal's CSP (:mod:`ewsgate.portal.security_headers`) can forbid both.
"""

from ewsgate.portal.ui.routes import ROUTES, mount_ui
from ewsgate.portal.ui.web import PortalUI, UIConfig

__all__ = ["ROUTES", "PortalUI", "UIConfig", "mount_ui"]
