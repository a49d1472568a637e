"""A private ``nats-server`` for the tests that route commands between portal replicas.

Each test run starts its own server on a free loopback port (``-a 127.0.0.1``): the
per-installation subjects would otherwise meet those of another test run sharing the machine's
server, where installation ids start at 1 in every fresh database. When the ``nats-server``
binary is missing, the machine's server at 127.0.0.1:4222 is used if it listens.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["running_nats"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def running_nats() -> Iterator[str]:
    """Yield ``nats://127.0.0.1:PORT`` of a server that stops when the block ends."""
    binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")
    if binary is None:
        if _listening(4222):
            yield "nats://127.0.0.1:4222"
            return
        raise RuntimeError("nats-server is not installed and nothing listens on "
                           "127.0.0.1:4222; run scripts/install-system-deps.sh")
    port = _free_port()
    process = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start on 127.0.0.1:{port}")
            time.sleep(0.02)
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
