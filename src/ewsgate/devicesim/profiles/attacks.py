"""The vocabulary of the ``hostile`` profile's attack groups, shared by every group module.

An attack group is a function ``group(device) -> list[Attack]``: it adds its routes to the
device's router and returns the attacks it serves. Groups live in their own modules and are
named in :data:`ewsgate.devicesim.profiles.hostile.ROUTE_GROUPS` as ``"module:function"``,
imported when the profile starts, so a new group joins with one line and no import cycle.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from ewsgate.devicesim.state import DeviceContext
from ewsgate.devicesim.web import Response, Router

__all__ = ["Attack", "HostileDevice", "RouteGroup", "load_group"]


@dataclass(frozen=True, slots=True)
class Attack:
    """One attack the profile serves, as ``/attacks.json`` lists it."""

    #: stable name, e.g. ``location-hex``
    name: str
    #: where the browser goes to launch it (add ``?port=N`` for the trap's port)
    path: str
    #: ``navigate``: open the path top-level; ``page``: open it and read its result (``#out``
    #: as JSON, or the element the attack's description names); ``websocket``: open
    #: ``wss://<session host><path>`` from a session page
    kind: Literal["navigate", "page", "websocket"]
    #: what the relay must do, in a sentence
    expect: str


class HostileDevice(Protocol):
    """What a group may use of the device: its router, context, hit counter and layout."""

    router: Router
    ctx: DeviceContext
    #: requests to paths no attack may reach, by path
    hits: Counter[str]

    def page(self, title: str, body: str, status: int = 200,
             headers: list[tuple[str, str]] | None = None, *, head: str = "") -> Response: ...


#: a group adds its routes to the device and returns the attacks it serves
RouteGroup = Callable[[HostileDevice], list[Attack]]


def load_group(name: str) -> RouteGroup:
    """The group ``"module:function"``; raises ImportError/AttributeError for a bad name."""
    module_name, _, function_name = name.partition(":")
    group: RouteGroup = getattr(importlib.import_module(module_name), function_name)
    return group
