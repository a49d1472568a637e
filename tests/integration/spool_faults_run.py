"""One run of the relay's browser side against a real fault of its spool disk, in a process
of its own that is started inside its own mount namespace (``unshare -m``) by
``test_faults.py``: it mounts a small tmpfs for the spool, makes the fault (fills the tmpfs to
the last byte, or remounts the spool read-only with a bind mount), undoes it, and prints what
the browser received and what the portal stored as one JSON line.

Usage: ``python spool_faults_run.py full|readonly WORKDIR`` (as root, in a private mount
namespace; it refuses to mount anything otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ewsgate.relay.access_log import AccessLog
from relay.helpers import FakePortal, RawServer, Relay, Seen, device_app

PAGE = b"<html><body>" + b"p" * 2000 + b"</body></html>"
ROUNDS = 20


def _own_mount_namespace() -> bool:
    """True when this process's mount namespace is not its parent's (``unshare -m`` made it)."""
    return os.readlink("/proc/self/ns/mnt") != os.readlink(f"/proc/{os.getppid()}/ns/mnt")


def _fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last byte (a real ENOSPC)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 1):
            block = b"\0" * size
            with contextlib.suppress(OSError):
                while os.write(fd, block) == size:
                    pass
    finally:
        os.close(fd)
    return filler


async def _get(relay: Relay, sid: str, path: str, cookie: str | None) -> dict[str, Any]:
    try:
        response = await relay.fetch(sid, "GET", path, cookie=cookie)
    except (ConnectionError, ssl.SSLError, OSError, TimeoutError) as exc:
        return {"path": path, "status": None, "error": type(exc).__name__}
    return {"path": path, "status": response.status, "length": len(response.body),
            "retry_after": response.header("retry-after"),
            "audit_page": b"Remote Technician Log is unavailable" in response.body}


async def read_only_start(work: Path) -> dict[str, Any]:
    """A relay started on a read-only spool: unavailable from the start, recovers when the
    directory becomes writable, without a restart."""
    spool = work / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k,mode=0700", "tmpfs", str(spool)],
                   check=True)
    (spool / "log").mkdir()
    subprocess.run(["mount", "--bind", str(spool / "log"), str(spool / "log")], check=True)
    subprocess.run(["mount", "-o", "remount,ro,bind", str(spool / "log")], check=True)
    seen = Seen()
    routes = {f"/p{i}": (lambda r, b: (200, [("Content-Type", "text/plain")], PAGE))
              for i in range(2 * ROUNDS)}
    answers: dict[str, list[dict[str, Any]]] = {"during": [], "after": []}
    async with FakePortal() as portal, RawServer(device_app(routes, seen)) as device, \
            Relay(work, portal, spool=spool / "log", ship=True) as relay:
        available_at_start = relay.log.available
        sid = relay.add_device(device.port)
        answers["during"].append(await _get(relay, sid, "/signin", None))
        forwarded_during_fault = len(seen.requests)
        subprocess.run(["mount", "-o", "remount,rw,bind", str(spool / "log")], check=True)
        for _ in range(100):
            if relay.log.available:
                break
            await asyncio.sleep(0.05)
        recovered_by_itself = relay.log.available
        cookie = await relay.login(sid)
        for i in range(ROUNDS):
            answers["after"].append(await _get(relay, sid, f"/p{i}", cookie))
        for _ in range(100):
            if not relay.log.pending():
                break
            await asyncio.sleep(0.05)
        stored = portal.entries()
    return {"answers": answers, "stored": stored, "available_at_start": available_at_start,
            "forwarded_during_fault": forwarded_during_fault,
            "recovered_by_itself": recovered_by_itself}


def _url_whose_completion_overflows(sid: str, spooled: int) -> str | None:
    """A ``/fill?x=…`` URL whose begin record ends so close to the end of a tmpfs page that
    its completion cannot fit in what is left of that page (tmpfs allocates whole pages: once
    the disk is full, a write fits only in the last page's remainder). Line sizes are measured
    with a scratch spool; ``spooled`` is the live segment's size."""
    with tempfile.TemporaryDirectory() as scratch_dir:
        for length in range(100, 1900, 7):
            url = "/fill?x=" + "f" * length
            scratch = AccessLog(Path(scratch_dir) / str(length), None)
            seq = scratch.begin(session_id=sid, time=time.time(), user="tech@example.com",
                                method="GET", url=url)
            begin = scratch._size
            scratch.record(session_id=sid, time=time.time(), user="tech@example.com",
                           method="GET", url=url, status=200, bytes_in=0, bytes_out=len(PAGE),
                           duration_ms=12, outcome="ok", seq=seq)
            completion = scratch._size - begin
            scratch.close()
            room = 4096 - (spooled + begin) % 4096
            if 0.3 * completion < room < 0.7 * completion:
                return url
    return None


async def fill_mid_request(work: Path) -> dict[str, Any]:
    """The disk fills while the device is answering: the begin record is in the spool, the
    completion cannot be written, so the response must not be delivered."""
    spool = work / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k,mode=0700", "tmpfs", str(spool)],
                   check=True)
    fillers: list[Path] = []

    def fill_then_answer(request: Any, body: bytes) -> tuple[int, list[Any], bytes]:
        fillers.append(_fill(spool))
        return 200, [("Content-Type", "text/plain")], PAGE

    seen = Seen()
    routes = {"/fill": fill_then_answer,
              "/ok": lambda r, b: (200, [("Content-Type", "text/plain")], PAGE)}
    async with FakePortal() as portal, RawServer(device_app(routes, seen)) as device, \
            Relay(work, portal, spool=spool / "log", ship=True) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        url = None
        for _ in range(10):
            url = _url_whose_completion_overflows(sid, relay.log._size)
            if url is not None:
                break
            await _get(relay, sid, "/ok?pad=" + "p" * 700, cookie)  # move the page offset
        assert url is not None
        withheld = await _get(relay, sid, url, cookie)
        for filler in fillers:
            filler.unlink()
        for _ in range(100):
            if relay.log.available:
                break
            await asyncio.sleep(0.05)
        after = await _get(relay, sid, "/ok", cookie)
        for _ in range(100):
            if not relay.log.pending():
                break
            await asyncio.sleep(0.05)
        stored = portal.entries()
    return {"withheld": withheld, "after": after, "stored": stored,
            "device_saw": [r.target.decode() for r, _ in seen.requests]}


async def main(mode: str, work: Path) -> dict[str, Any]:
    spool = work / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k,mode=0700", "tmpfs", str(spool)],
                   check=True)
    seen = Seen()
    routes = {f"/p{i}": (lambda r, b: (200, [("Content-Type", "text/plain")], PAGE))
              for i in range(3 * ROUNDS)}
    answers: dict[str, list[dict[str, Any]]] = {"before": [], "during": [], "after": []}
    async with FakePortal() as portal, RawServer(device_app(routes, seen)) as device, \
            Relay(work, portal, spool=spool / "log", ship=True) as relay:
        sid = relay.add_device(device.port)
        cookie = await relay.login(sid)
        for i in range(ROUNDS):
            answers["before"].append(await _get(relay, sid, f"/p{i}", cookie))
        if mode == "full":
            filler = _fill(spool)
        else:
            subprocess.run(["mount", "--bind", str(spool / "log"), str(spool / "log")],
                           check=True)
            subprocess.run(["mount", "-o", "remount,ro,bind", str(spool / "log")], check=True)
        forwarded_before_fault = len(seen.requests)
        for i in range(ROUNDS, 2 * ROUNDS):
            answers["during"].append(await _get(relay, sid, f"/p{i}", cookie))
        # a browser without a cookie: no sign-in may start
        answers["during"].append(await _get(relay, sid, "/signin", None))
        forwarded_during_fault = len(seen.requests) - forwarded_before_fault
        metrics_during = relay.log.metrics()
        if mode == "full":
            filler.unlink()
        else:
            subprocess.run(["mount", "-o", "remount,rw,bind", str(spool / "log")], check=True)
        for _ in range(100):  # the shipper's probe notices the disk is back by itself
            if relay.log.available:
                break
            await asyncio.sleep(0.05)
        recovered_by_itself = relay.log.available
        for i in range(2 * ROUNDS, 3 * ROUNDS):
            answers["after"].append(await _get(relay, sid, f"/p{i}", cookie))
        for _ in range(100):
            if not relay.log.pending():
                break
            await asyncio.sleep(0.05)
        lines = [line for p in sorted((spool / "log").glob("segment-*"))
                 for line in p.read_bytes().splitlines()]
        torn = sum(1 for line in lines if not _parses(line))
        shipped = [e for batch in portal.log_batches for e in batch["entries"]]
        stored = portal.entries()
    return {"answers": answers, "stored": stored, "shipped_count": len(shipped),
            "torn_lines": torn, "forwarded_during_fault": forwarded_during_fault,
            "metrics_during": metrics_during, "recovered_by_itself": recovered_by_itself,
            "session_id": sid}


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


if __name__ == "__main__":
    if os.geteuid() != 0 or not _own_mount_namespace():
        sys.exit("run as root inside a private mount namespace (unshare -m)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run = {"readonly-start": read_only_start, "fill-mid-request": fill_mid_request}.get(
        sys.argv[1])
    result = asyncio.run(run(Path(sys.argv[2])) if run else main(sys.argv[1], Path(sys.argv[2])))
    print("RESULT " + json.dumps(result), flush=True)
