"""What several pages show beside their own objects: customer paths, select options, counts.

Everything here is built from what the service layer returns for the signed-in actor
(``list_customers``, ``list_installations``, ``list_devices``), so an option never names a
customer or an installation the actor may not see. A customer whose parent is invisible to the
actor is shown as a root of the actor's tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from ewsgate.portal.services import customers as customer_service
from ewsgate.portal.services import installations as installation_service
from ewsgate.portal.services.access import Actor
from ewsgate.portal.store.models import Customer, Installation

__all__ = ["Directory", "Option", "TreeNode", "load_directory"]

SEPARATOR = " \u203a "  # a single right-pointing angle quote


@dataclass(frozen=True)
class Option:
    """One ``<option>``: the id and the text shown."""

    id: int
    label: str


@dataclass
class TreeNode:
    """A customer in the visible tree: its own installations, the devices of it and of every
    visible customer below it (what ``/devices?customer=ID`` lists), and its children."""

    customer: Customer
    installation_count: int = 0
    device_count: int = 0
    children: list[TreeNode] = field(default_factory=list)


@dataclass(frozen=True)
class Directory:
    """The customers and installations the actor can see, indexed for display."""

    customers: dict[int, Customer]
    installations: dict[int, Installation]

    def customer_label(self, customer_id: int | None) -> str:
        """``"Acme \u203a Warehouse"``: the visible path down to the customer."""
        names: list[str] = []
        seen: set[int] = set()
        current = customer_id
        while current is not None and current in self.customers and current not in seen:
            seen.add(current)
            names.append(self.customers[current].name)
            current = self.customers[current].parent_id
        return SEPARATOR.join(reversed(names)) if names else "—"

    def customer_options(self) -> list[Option]:
        """Every visible customer, in tree order, labelled with its path."""
        return [Option(node.customer.id, self.customer_label(node.customer.id))
                for node in _walk(self.tree())]

    def installation_options(self) -> list[Option]:
        return sorted((Option(i.id, f"{i.name} ({self.customer_label(i.customer_id)})")
                       for i in self.installations.values()), key=lambda o: o.label.lower())

    def installation_name(self, installation_id: int) -> str:
        installation = self.installations.get(installation_id)
        return installation.name if installation else "—"

    def installation_online(self, installation_id: int) -> bool:
        installation = self.installations.get(installation_id)
        return bool(installation and installation.online)

    def customer_of_installation(self, installation_id: int) -> int | None:
        installation = self.installations.get(installation_id)
        return installation.customer_id if installation else None

    def tree(self, device_counts: dict[int, int] | None = None) -> list[TreeNode]:
        """The visible customers as a forest, children sorted by name."""
        nodes = {cid: TreeNode(c) for cid, c in self.customers.items()}
        for installation in self.installations.values():
            node = nodes.get(installation.customer_id)
            if node is not None:
                node.installation_count += 1
                node.device_count += (device_counts or {}).get(installation.id, 0)
        roots: list[TreeNode] = []
        for cid, node in nodes.items():
            parent = self.customers[cid].parent_id
            if parent is not None and parent in nodes and parent != cid:
                nodes[parent].children.append(node)
            else:
                roots.append(node)
        for node in nodes.values():
            node.children.sort(key=lambda n: n.customer.name.lower())
        roots.sort(key=lambda n: n.customer.name.lower())
        for node in reversed(_walk(roots)):  # children before parents: totals roll up
            node.device_count += sum(child.device_count for child in node.children)
        return roots


def _walk(nodes: list[TreeNode]) -> list[TreeNode]:
    out: list[TreeNode] = []
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(node.children))
    return out


async def load_directory(session: AsyncSession, actor: Actor) -> Directory:
    """The visible customers and installations, through the service layer."""
    customers = await customer_service.list_customers(session, actor)
    installations = await installation_service.list_installations(session, actor)
    return Directory({c.id: c for c in customers}, {i.id: i for i in installations})
