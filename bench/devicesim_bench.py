"""The simulated printer's own speed: the reference ("direct") numbers every relay path is read
against, and the proof that big transfers run at constant memory.

Three ``ewsgate devicesim`` processes (``legacyhttp`` over HTTP, ``hp`` over modern TLS,
``brother`` over legacy TLS 1.1) are started on free loopback ports; curl talks to them as a
browser would. Rows:

* ``log download``: the large log (``--large-log-mb``), MB/s and the device's peak RSS;
* ``firmware upload``: a multipart upload of a file of the same size, MB/s, the SHA-256 the
  device reports checked against hashlib, and the device's peak RSS;
* ``status page``: time to the last byte of the status page, p50/p99 over N sequential curl
  requests (a new connection and, for HTTPS, a new handshake each time).

Run: ``.venv/bin/python bench/devicesim_bench.py [--mb 200] [--pages 50]``. Bounded: at most
2048 MB and 1000 pages; every child process is stopped in ``finally``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

PATHS = (
    # label, profile, scheme, curl TLS options, status path, log path, upload path
    ("HTTP/1.0 (legacyhttp)", "legacyhttp", "http", [], "/status.html", "/logs/full.log",
     "/firmware_upload.cgi"),
    ("HTTPS TLS 1.2+ (hp)", "hp", "https", ["-k"], "/hp/device/DeviceStatus/Index",
     "/hp/device/EventLog/Download", "/hp/device/FirmwareUpgrade/Upload"),
    ("HTTPS TLS 1.1 (brother)", "brother", "https",
     ["-k", "--tlsv1.0", "--tls-max", "1.1", "--ciphers", "DEFAULT:@SECLEVEL=0"],
     "/general/status.html", None, None),
)


class Device:
    """One ``ewsgate devicesim`` child process; ``peak_rss`` samples its memory."""

    def __init__(self, profile: str, scheme: str, mb: int) -> None:
        args = [sys.executable, "-m", "ewsgate", "devicesim", "--profile", profile,
                f"--{scheme}", "127.0.0.1:0", "--large-log-mb", str(mb)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line or line.strip() == "ready":
                break
            text += line
        match = re.search(rf"{scheme}\s+({scheme}://\S+)/", text)
        if match is None:
            raise RuntimeError(f"devicesim {profile} did not start: {text!r}")
        self.base = match.group(1)
        self.process = psutil.Process(self.proc.pid)

    def peak_rss_during(self, work: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
        """Run ``work`` (a command) while sampling this device's RSS every 50 ms."""
        peak = [self.process.memory_info().rss]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                peak[0] = max(peak[0], self.process.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = subprocess.run(work, capture_output=True, text=True, timeout=600,
                                    check=True)
        finally:
            done.set()
            sampler.join()
        return peak[0] / 2**20, result

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run(mb: int, pages: int) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="devicesim-bench-") as folder:
        firmware = Path(folder) / "firmware.bin"
        digest = hashlib.sha256()
        with firmware.open("wb") as handle:
            for _ in range(mb):
                block = os.urandom(2**20)
                digest.update(block)
                handle.write(block)
        for label, profile, scheme, tls, status, log, upload in PATHS:
            device = Device(profile, scheme, mb)
            try:
                idle = device.process.memory_info().rss / 2**20
                if log:
                    peak, result = device.peak_rss_during(
                        ["curl", "-sS", "-o", "/dev/null", "-w", "%{speed_download}", *tls,
                         device.base + log])
                    rows.append((label, f"log download {mb} MB",
                                 f"{float(result.stdout) / 1e6:.0f} MB/s",
                                 f"idle {idle:.0f} MiB, peak {peak:.0f} MiB"))
                if upload:
                    peak, result = device.peak_rss_during(
                        ["curl", "-sS", "-w", "\n%{speed_upload}", *tls,
                         "-F", f"firmware=@{firmware}", device.base + upload + "?format=json"])
                    body, speed = result.stdout.rsplit("\n", 1)
                    receipt = json.loads(body)
                    ok = receipt["sha256"] == digest.hexdigest() and receipt["size"] == mb * 2**20
                    check = "ok" if ok else "WRONG"
                    rows.append((label, f"firmware upload {mb} MB",
                                 f"{float(speed) / 1e6:.0f} MB/s (sha256 {check})",
                                 f"peak {peak:.0f} MiB"))
                samples = []
                for _ in range(pages):
                    result = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w",
                                             "%{time_total}", *tls, device.base + status],
                                            capture_output=True, text=True, timeout=30,
                                            check=True)
                    samples.append(float(result.stdout) * 1000)
                rows.append((label, f"status page x{pages} (new connection each)",
                             f"p50 {_percentile(samples, 0.5):.1f} ms, "
                             f"p99 {_percentile(samples, 0.99):.1f} ms",
                             f"mean {statistics.fmean(samples):.1f} ms"))
            finally:
                device.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the log and the upload")
    parser.add_argument("--pages", type=int, default=50, help="status page requests per path")
    args = parser.parse_args()
    if shutil.which("curl") is None:
        print("curl is needed for this benchmark (apt-get install curl)", file=sys.stderr)
        return 2
    mb = min(max(args.mb, 1), 2048)
    pages = min(max(args.pages, 1), 1000)
    rows = run(mb, pages)
    print(f"Simulated printer, direct (curl on 127.0.0.1, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]})")
    print()
    print("| path | what | result | device memory |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
