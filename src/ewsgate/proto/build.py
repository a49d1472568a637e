"""``python -m ewsgate.proto.build`` (``make proto``): generate ``*_pb2*.py`` from the ``.proto``
files into this package. Generated code is built, never edited and never committed.
"""

from __future__ import annotations

import sys

from ewsgate.proto._generate import build, is_stale

__all__ = ["build", "is_stale"]

if __name__ == "__main__":
    sys.exit(build())
