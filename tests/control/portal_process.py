"""A portal process that runs only the control server, for the kill-and-restart test.

    python tests/control/portal_process.py DATABASE_URL DATA_DIR GRPC_LISTEN ENROL_LISTEN

Prints ``ready`` once both ports listen, then serves until killed.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from ewsgate.portal.control import ControlServer, ControlServerConfig
from ewsgate.portal.control.runtime import load_portal_ca
from ewsgate.portal.store.db import Database
from ewsgate.portal.store.types import utc_now


async def main(url: str, data_dir: str, listen: str, enrol: str) -> None:
    logging.basicConfig(level=logging.INFO, format="portal %(asctime)s %(message)s")
    database = Database(url)
    server = ControlServer(ControlServerConfig(listen=listen, enrol_listen=enrol),
                           database=database, ca=load_portal_ca(Path(data_dir)), clock=utc_now)
    await server.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
