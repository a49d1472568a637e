"""Start, watch and stop the processes of a local ewsgate system.

The demo (``ewsgate demo``), the end-to-end tests and the benchmarks all run the same real
processes — portal, relay, agent, simulated printers — on loopback. This module is the one place
that starts them (``python -m ewsgate <command> …`` with a clean environment plus what the caller
sets), sends their output to one log file each, waits until each one listens, and stops every one
of them — terminate, then kill after a grace period — whatever happened before.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ewsgate.fsmode import private_dir

__all__ = ["ManagedProcess", "ProcessFailed", "Supervisor", "free_port", "wait_for_port"]


class ProcessFailed(RuntimeError):
    """A supervised process exited or never started listening; the message quotes its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the kernel picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_for_port(host: str, port: int, *, timeout: float, process: subprocess.Popen[bytes] | None
                  = None) -> bool:
    """Wait until something accepts TCP connections on ``host:port``; False on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


@dataclass
class ManagedProcess:
    name: str
    args: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def running(self) -> bool:
        return self.popen.poll() is None


class Supervisor:
    """Owns a set of child processes; use as a context manager so they always stop."""

    def __init__(self, log_dir: Path, *, env: Mapping[str, str] | None = None) -> None:
        self.log_dir = log_dir
        private_dir(self.log_dir)
        base = {key: value for key, value in os.environ.items() if not key.startswith("EWSGATE_")}
        self.env = {**base, **(env or {})}
        self.processes: list[ManagedProcess] = []

    def start(self, name: str, command: Sequence[str], *, env: Mapping[str, str] | None = None,
              wait_port: tuple[str, int] | None = None, timeout: float = 30.0,
              module: str = "ewsgate") -> ManagedProcess:
        """Run ``python -m ewsgate <command…>``; with ``wait_port``, wait until it listens."""
        args = [sys.executable, "-m", module, *command]
        log_path = self.log_dir / f"{name}.log"
        # logs hold what the processes print (URLs, sometimes secrets): the user's only
        log = os.fdopen(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
        popen = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**self.env, **(env or {})}, start_new_session=True,
        )
        managed = ManagedProcess(name, args, popen, log_path, log)
        self.processes.append(managed)
        if wait_port is not None and not wait_for_port(*wait_port, timeout=timeout, process=popen):
            raise ProcessFailed(
                f"{name} did not start listening on {wait_port[0]}:{wait_port[1]} within "
                f"{timeout:.0f} s (exit code {popen.poll()}); its log ({log_path}) ends:\n"
                f"{managed.log_tail()}"
            )
        return managed

    def check(self) -> None:
        """Raise if any supervised process has exited."""
        for managed in self.processes:
            if not managed.running:
                raise ProcessFailed(
                    f"{managed.name} exited with code {managed.popen.returncode}; its log "
                    f"({managed.log_path}) ends:\n{managed.log_tail()}"
                )

    def stop(self, name: str | None = None, *, grace: float = 5.0, kill: bool = False) -> None:
        """Stop one process by name (or all, newest first): SIGTERM, then SIGKILL after grace."""
        targets = [p for p in reversed(self.processes) if name is None or p.name == name]
        for managed in targets:
            if managed.running:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(managed.popen.pid, signal.SIGKILL if kill else signal.SIGTERM)
        for managed in targets:
            try:
                managed.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(managed.popen.pid, signal.SIGKILL)
                managed.popen.wait(timeout=grace)
            managed._log.close()
            self.processes.remove(managed)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
