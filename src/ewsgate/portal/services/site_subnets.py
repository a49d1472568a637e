"""An installation's site subnets: the networks its agent may reach devices in.

The portal keeps the list on the installation (``Installation.site_subnets``) and sends it in
every ``VerifyDevice`` and ``OpenSession`` payload (``"site_subnets"``); the agent then reaches
only addresses inside both this list and its own ``--site-subnets`` -- the intersection, so the
tighter of the two wins and neither the portal nor the site can widen the other's limit (see
:mod:`ewsgate.agent.address_policy`).

:func:`clean_site_subnets` applies the agent's own parser, so the portal stores nothing the
agent would refuse: each entry a network in CIDR form with no host bits set, none inside a
range the agent never reaches (loopback, link-local, multicast, carrier-grade NAT, reserved,
...). It takes a list (REST) or text separated by commas, spaces or new lines (the HTML form),
and returns the canonical texts, or ``None`` for an empty list (no limit from the portal).
"""

from __future__ import annotations

import re
from typing import Any

from ewsgate.agent.address_policy import SiteSubnetError, parse_site_subnets
from ewsgate.portal.services.errors import InvalidInput

__all__ = ["MAX_SITE_SUBNETS", "clean_site_subnets"]

#: more than this many entries is a mistake (a site lists its device VLANs, not the internet)
MAX_SITE_SUBNETS = 64


def clean_site_subnets(field: str, value: Any) -> list[str] | None:
    """The canonical list of site subnets in ``value``, or ``None`` when it lists none."""
    if value is None:
        return None
    if isinstance(value, str):
        items = [part for part in re.split(r"[\s,;]+", value) if part]
    elif isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value if item.strip()]
    else:
        raise InvalidInput(f"{field} must be a list of networks such as \"10.20.0.0/24\", "
                           f"not {type(value).__name__}", field=field)
    if len(items) > MAX_SITE_SUBNETS:
        raise InvalidInput(f"{field} lists {len(items)} networks; at most {MAX_SITE_SUBNETS} "
                           "are accepted (list the site's device subnets)", field=field)
    try:
        networks = parse_site_subnets(items)
    except SiteSubnetError as exc:
        raise InvalidInput(f"{field}: {exc}", field=field) from None
    canonical: list[str] = []
    for network in networks:
        if network.prefixlen == 0:
            raise InvalidInput(f"{field}: {network} is every address, which is no limit; list "
                               "the site's device subnets, or leave the field empty",
                               field=field)
        if str(network) not in canonical:
            canonical.append(str(network))
    return canonical or None
