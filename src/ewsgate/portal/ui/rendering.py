"""Turning a page's context into an HTML response: the Jinja2 environment and its filters.

One :class:`Renderer` per application. It owns a sandbox-free but autoescaping Jinja2
environment over ``portal/templates`` (every value is HTML-escaped unless a template says
otherwise, and none does), the filters the templates use (``ago`` with the injected clock,
``make_label``, ``job_type_label``, ``filesize``) and ``static(path)``, which appends a short
content hash so that browsers may cache static files for long and still see a new version at
once. Every page response is ``Cache-Control: no-store``: pages show one-time secrets and
per-user data that must not stay in a shared cache or the back-forward cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

__all__ = ["JOB_TYPES", "STATIC_DIR", "TEMPLATE_DIR", "Renderer", "ago", "filesize",
           "job_type_label", "make_label"]

PORTAL_DIR = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = PORTAL_DIR / "templates"
STATIC_DIR = PORTAL_DIR / "static"

_MAKES = {"hp": "HP", "ricoh": "Ricoh", "kyocera": "Kyocera", "canon": "Canon",
          "brother": "Brother", "lexmark": "Lexmark", "xerox": "Xerox",
          "konica": "Konica Minolta", "sharp": "Sharp", "epson": "Epson", "other": "Other"}
JOB_TYPES = {"open_device_web_page": "Open Device Web Page",
              "verify_identity": "Verify identity"}


def make_label(make: str | None) -> str:
    """``"konica"`` → ``"Konica Minolta"``; unknown values are shown as given."""
    if not make:
        return "—"
    return _MAKES.get(make, make)


def job_type_label(job_type: str | None) -> str:
    """``"open_device_web_page"`` → ``"Open Device Web Page"``."""
    if not job_type:
        return "—"
    return JOB_TYPES.get(job_type, job_type.replace("_", " ").capitalize())


def filesize(count: int | None) -> str:
    """A byte count for people: ``512 B``, ``1.5 KiB``, ``3.2 MiB``."""
    if count is None:
        return "—"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover


def ago(value: datetime | None, now: datetime) -> str:
    """``value`` relative to ``now`` in words: ``just now``, ``5 min ago``, ``in 3 h``."""
    if value is None:
        return "never"
    seconds = int((now - value).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        return "just now"
    if seconds < 3600:
        text = f"{max(1, round(seconds / 60))} min"
    elif seconds < 86400:
        text = f"{round(seconds / 3600)} h"
    elif seconds < 86400 * 60:
        days = round(seconds / 86400)
        text = f"{days} day{'s' if days != 1 else ''}"
    else:
        return value.strftime("%Y-%m-%d")
    return f"in {text}" if future else f"{text} ago"


class Renderer:
    """Renders templates to :class:`HTMLResponse`; ``clock`` drives the ``ago`` filter."""

    def __init__(self, clock: Callable[[], datetime], *, template_dir: Path = TEMPLATE_DIR,
                 static_dir: Path = STATIC_DIR, static_prefix: str = "/static") -> None:
        self.clock = clock
        self.static_dir = static_dir
        self.static_prefix = static_prefix.rstrip("/")
        self._versions: dict[str, str] = {}
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(template_dir)),
            autoescape=jinja2.select_autoescape(["html"], default=True),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["ago"] = lambda value: ago(value, self.clock())
        self.env.filters["make_label"] = make_label
        self.env.filters["job_type_label"] = job_type_label
        self.env.filters["filesize"] = filesize
        self.env.filters["weak_identity"] = _weak_identity
        self.env.globals["static"] = self.static_url

    def static_url(self, path: str) -> str:
        """URL of a static file with a content-hash query, so caches see each new version."""
        version = self._versions.get(path)
        if version is None:
            file = (self.static_dir / path).resolve()
            if not file.is_relative_to(self.static_dir.resolve()) or not file.is_file():
                raise FileNotFoundError(f"static file {path!r} is not in {self.static_dir}")
            version = hashlib.sha256(file.read_bytes()).hexdigest()[:10]
            self._versions[path] = version
        return f"{self.static_prefix}/{path}?v={version}"

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        """The template ``name`` rendered with ``context``."""
        return self.env.get_template(name).render(**context)

    def page(self, name: str, context: Mapping[str, Any], *, status_code: int = 200,
             headers: Mapping[str, str] | None = None) -> HTMLResponse:
        """An HTML page response, never cached."""
        response = HTMLResponse(self.render(name, context), status_code=status_code)
        response.headers["Cache-Control"] = "no-store"
        for key, value in (headers or {}).items():
            response.headers[key] = value
        return response


def _weak_identity(device: Any) -> bool:
    """Whether a device's identity rests on SNMPv2c and plain HTTP alone (see device_pins)."""
    from ewsgate.portal.services.device_pins import identity_strength

    return bool(identity_strength(device)["weak"])
