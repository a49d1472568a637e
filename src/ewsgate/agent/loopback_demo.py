"""The agent for a one-machine demo or test: ``python -m ewsgate.agent.loopback_demo DATA_DIR``.

On a site the agent refuses to dial loopback addresses: a device record pointing at 127.0.0.1
would otherwise reach services on the agent's own PC. The demo and the end-to-end tests run their
simulated printers on loopback, so they start the agent through this module, which turns that one
refusal off. It is not an ``ewsgate`` command, flag, environment variable or config key, so no
site configuration can turn it on by accident.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ewsgate.agent.main import run

__all__: list[str] = []

if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m ewsgate.agent.loopback_demo DATA_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(run({"data_dir": Path(sys.argv[1]), "proxy": None}, allow_loopback_devices=True))
