"""Generate the Python modules for the ``.proto`` contract (run by ``python -m ewsgate.proto.build``
and, when they are missing or stale, by importing :mod:`ewsgate.proto`).

Generated code is built from the ``.proto`` files, never edited and never committed; the
Makefile runs this before the demo, the tests and the benchmarks, and ``ewsgate.proto`` runs it
on first import when the generated modules are missing or older than their ``.proto`` (so a
fresh ``pip install -e .`` works without a separate step).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["build", "is_stale"]

PROTO_DIR = Path(__file__).resolve().parent
SRC_ROOT = PROTO_DIR.parents[1]


def _outputs(proto: Path, out_root: Path) -> list[Path]:
    stem = proto.stem
    base = out_root / "ewsgate" / "proto"
    return [base / f"{stem}_pb2.py", base / f"{stem}_pb2.pyi", base / f"{stem}_pb2_grpc.py"]


def is_stale(out_root: Path = SRC_ROOT) -> bool:
    """True when a generated module is missing or older than its ``.proto``."""
    for proto in PROTO_DIR.glob("*.proto"):
        mtime = proto.stat().st_mtime
        for output in _outputs(proto, out_root):
            if not output.exists() or output.stat().st_mtime < mtime:
                return True
    return False


def build(out_root: Path = SRC_ROOT) -> int:
    """Run protoc on every ``.proto`` here; outputs go to ``out_root/ewsgate/proto``."""
    from grpc_tools import protoc  # build-time dependency, pinned with grpcio

    protos = sorted(PROTO_DIR.glob("*.proto"))
    if not protos:
        return 0
    (out_root / "ewsgate" / "proto").mkdir(parents=True, exist_ok=True)
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{SRC_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(str(path.relative_to(SRC_ROOT)) for path in protos),
    ]
    return int(protoc.main(args))
