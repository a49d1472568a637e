"""The agent's device-identity readers: SNMP (pysnmp, asyncio) and the ARP/neighbour table.

::

    ewsgate.agent.identity.check_identity(request)          the rules, the sentence, the code
        │
        ├─ probe.read_snmp_identity ──► client.SnmpClient ──► UDP ──► the device's SNMP agent
        │     (what to read: ipAddrTable → ifIndex → ifPhysAddress; Printer-MIB and vendor
        │      serial OIDs from oids.py; decoding in values.py)
        │
        └─ neighbours.NeighbourTable.lookup(ip)   when SNMP is silent or off
              (SystemNeighbourTable: /proc/net/arp, ``ip neigh``; StaticNeighbourTable)

``oids``, ``values`` and the parsers in ``neighbours`` are pure; ``client`` is the only module
that touches pysnmp, and translates its results and errors in one place.
"""

__all__: list[str] = []
