"""The simulated front panel: a four-line display, LEDs and a menu driven by key presses (no I/O).

The ``panel`` profile streams :meth:`PanelModel.view` over a WebSocket several times a second
and feeds the technician's key presses to :meth:`PanelModel.press`. One model per device, as
there is one physical panel: every viewer sees the same screen, and a key pressed by one is seen
by all.

Screens::

    home ──menu/ok──▶ menu (cursor over top-level entries) ──ok──▶ submenu ──ok──▶ message
      ▲                  │ back                                 │ back          │ back/ok
      └────── home ──────┴──────────────────────────────────────┴───────────────┘
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["KEYS", "MENU", "PanelModel", "UnknownKey"]

KEYS = ("up", "down", "ok", "back", "home", "menu", "stop")
WIDTH = 20

#: top-level entry → its items ({ip}, {mac}, {host} and {name} are filled in at display time)
MENU: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Information", ("Configuration Page", "Supplies Status", "Usage Page")),
    ("Paper Setup", ("Tray 1: Any Size", "Tray 2: A4 Plain", "Tray 3: Letter")),
    ("Network", ("IPv4: {ip}", "MAC: {mac}", "Host: {host}")),
    ("Reports", ("Print Config Page", "Print Event Log")),
    ("Service", ("Cleaning Page", "Restore Defaults")),
)


class UnknownKey(ValueError):
    """A key name outside :data:`KEYS`."""

    code = "devicesim.panel_unknown_key"


@dataclass
class PanelModel:
    """State of the panel; ``facts`` supplies the values shown on the Network and home screens."""

    facts: Callable[[], dict[str, str]]
    screen: str = "home"
    top: int = 0
    item: int = 0
    message: str = ""
    attention: bool = False
    presses: int = 0

    def press(self, key: str) -> None:
        key = key.strip().lower()
        if key not in KEYS:
            raise UnknownKey(f"unknown key {key!r}; keys are {', '.join(KEYS)}")
        self.presses += 1
        if key == "home":
            self.screen, self.message = "home", ""
        elif key == "stop":
            self.screen, self.message = "message", "Job cancelled"
        elif self.screen == "home":
            if key in ("menu", "ok"):
                self.screen, self.top = "menu", 0
        elif self.screen == "menu":
            if key in ("up", "down"):
                self.top = (self.top + (1 if key == "down" else -1)) % len(MENU)
            elif key == "ok":
                self.screen, self.item = "submenu", 0
            elif key in ("back", "menu"):
                self.screen = "home"
        elif self.screen == "submenu":
            items = MENU[self.top][1]
            if key in ("up", "down"):
                self.item = (self.item + (1 if key == "down" else -1)) % len(items)
            elif key == "ok":
                self.screen, self.message = "message", self._fill(items[self.item])
            elif key in ("back", "menu"):
                self.screen = "menu"
        elif self.screen == "message" and key in ("back", "ok", "menu"):
            self.screen = "submenu" if self.message != "Job cancelled" else "home"
            self.message = ""

    def _fill(self, text: str) -> str:
        return text.format(**self.facts())

    def lines(self) -> list[str]:
        facts = self.facts()
        if self.screen == "home":
            rows = ["Ready", facts.get("name", ""), "Tray 2: A4 Plain", facts.get("clock", "")]
        elif self.screen == "menu":
            rows = [("> " if i == self.top else "  ") + name for i, (name, _) in enumerate(MENU)]
            start = max(0, min(self.top - 1, len(rows) - 4))
            rows = rows[start : start + 4]
        elif self.screen == "submenu":
            title, items = MENU[self.top]
            rows = [title.upper()] + [("> " if i == self.item else "  ") + self._fill(name)
                                      for i, name in enumerate(items)]
        else:
            wrapped = textwrap.wrap(self.message, WIDTH)[:2] or [""]
            rows = [*wrapped, *[""] * (3 - len(wrapped)), "OK/Back: return"]
        rows = [*rows, "", "", "", ""][:4]
        return [row[:WIDTH].ljust(WIDTH) for row in rows]

    def view(self, tick: int) -> dict[str, object]:
        """What the panel shows at ``tick`` (the data LED blinks with the tick)."""
        return {
            "type": "panel",
            "seq": tick,
            "screen": self.screen,
            "lines": self.lines(),
            "leds": {"ready": True, "data": tick % 2 == 0, "attention": self.attention},
            "presses": self.presses,
        }
