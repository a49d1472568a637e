"""The simulated printers' web sides, one module per behaviour seen in the field.

Each module defines one :class:`~ewsgate.devicesim.profiles.base.Profile` subclass; this package
maps profile names (``--profile``) to them. The list and each profile's quirks and sources are in
docs/devicesim.md.
"""

from __future__ import annotations

import importlib

from ewsgate.devicesim.profiles.base import Profile

__all__ = ["PROFILES", "profile_class"]

#: profile name → "module:Class" (imported on first use)
PROFILES: dict[str, str] = {
    "hp": "ewsgate.devicesim.profiles.hp:HpProfile",
    "brother": "ewsgate.devicesim.profiles.brother:BrotherProfile",
    "ricoh": "ewsgate.devicesim.profiles.ricoh:RicohProfile",
    "sharp": "ewsgate.devicesim.profiles.sharp:SharpProfile",
    "absolute": "ewsgate.devicesim.profiles.absolute:AbsoluteProfile",
    "panel": "ewsgate.devicesim.profiles.panel:PanelProfile",
    "konica": "ewsgate.devicesim.profiles.konica:KonicaProfile",
    "legacyhttp": "ewsgate.devicesim.profiles.legacyhttp:LegacyHttpProfile",
    "hostile": "ewsgate.devicesim.profiles.hostile:HostileProfile",
    "cookiejs": "ewsgate.devicesim.profiles.cookiejs:CookieJsProfile",
}


def profile_class(name: str) -> type[Profile]:
    """The class of profile ``name``; KeyError for an unknown name."""
    module_name, _, class_name = PROFILES[name].partition(":")
    cls: type[Profile] = getattr(importlib.import_module(module_name), class_name)
    return cls
