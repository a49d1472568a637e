"""Build the Python modules for the ``.proto`` contract (``python -m ewsgate.proto.build``).

Generated code is built from the ``.proto`` files, never edited and never committed; the
Makefile runs this before the demo, the tests and the benchmarks.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["build"]

PROTO_DIR = Path(__file__).resolve().parent
SRC_ROOT = PROTO_DIR.parents[1]


def build() -> int:
    from grpc_tools import protoc  # build-time dependency, pinned with grpcio

    protos = sorted(PROTO_DIR.glob("*.proto"))
    if not protos:
        return 0
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{SRC_ROOT}",
        f"-I{include}",
        f"--python_out={SRC_ROOT}",
        f"--pyi_out={SRC_ROOT}",
        f"--grpc_python_out={SRC_ROOT}",
        *(str(path.relative_to(SRC_ROOT)) for path in protos),
    ]
    return int(protoc.main(args))


if __name__ == "__main__":
    sys.exit(build())
