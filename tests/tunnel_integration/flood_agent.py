"""A real agent process for the flood test: one TunnelClient session to a (hostile) relay.

``python flood_agent.py CONFIG.json`` opens the session the file describes, waits until it
ends (or ``within`` seconds pass), and prints one JSON line: the session's state and reason,
the tunnel reports it would send to the portal, and how many tunnel connections it made.
Only the test switch for loopback devices is set; everything else is the production agent code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path


async def main(config: dict[str, object]) -> dict[str, object]:
    from ewsgate.agent.dialer import (
        ALLOW_LOOPBACK_FOR_TESTS,
        DeviceEndpoint,
        DeviceTarget,
        DialPolicy,
    )
    from ewsgate.agent.tunnel_client import SessionSpec, TunnelClient, TunnelClientConfig
    from ewsgate.agent.tunnel_reports import TunnelReport

    tmp = Path(str(config["tmp"]))
    reports: list[TunnelReport] = []
    client = TunnelClient(TunnelClientConfig(
        cert_file=tmp / "agent.crt", key_file=tmp / "agent.key", relay_ca_file=tmp / "ca.crt",
        dial_policy=DialPolicy(allow_loopback=ALLOW_LOOPBACK_FOR_TESTS),
        reconnect_initial=0.05, reconnect_max=0.2), reporter=reports.append)
    device = DeviceTarget(ip="127.0.0.1",
                          endpoints=(DeviceEndpoint("http", int(str(config["device_port"]))),))
    session = await client.open_session(SessionSpec(
        session_id="flood", relay_host="127.0.0.1", relay_port=int(str(config["relay_port"])),
        ticket="ticket", device=device, expires_at=time.time() + 600))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(session.ended), float(str(config["within"])))
    # a real agent keeps running: give the last connection its linger (the GOAWAY's delivery)
    await asyncio.sleep(1.0)
    await client.close()
    return {"state": session.state.value, "reason": session.reason,
            "generations": session.generation,
            "reports": [{"kind": r.kind, "code": r.code, "count": r.count, "budget": r.budget,
                         "detail": r.detail} for r in reports]}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))), flush=True)
