"""Run every benchmark under bench/ and write docs/performance.md (``make bench``).

Each benchmark is its own script that prints Markdown tables on stdout (progress goes to
stderr). This runner runs them one after another in a fixed order, with bounded time each,
copies their tables into docs/performance.md beside the reference paths measured on the same
kind of machine (direct, OpenSSH reverse tunnel, TLS reverse-proxy hops), and draws a few plots
(PNG, under docs/img/) from the tables where a picture says more.

    python bench/run_all.py [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
IMG = DOCS / "img"


@dataclass(frozen=True)
class Bench:
    name: str
    title: str
    script: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]
    timeout: float
    why: str


BENCHES: tuple[Bench, ...] = (
    Bench("tunnel", "Tunnel: agent ⇄ relay, many streams over one TLS connection",
          "bench/tunnel_bench.py", (), ("--quick",), 1500,
          "Through our tunnel vs straight to the origin vs OpenSSH's `ssh -N -R` reverse tunnel, "
          "all on loopback in one run."),
    Bench("relay", "Through the relay: browser HTTPS ⇄ relay ⇄ tunnel ⇄ agent ⇄ device",
          "bench/relay_bench.py", (), ("--quick",), 1500,
          "Time to first page (POST → first byte of the device page through the session) and "
          "page/bulk throughput through the whole path, beside direct HTTP to the device and the "
          "OpenSSH reverse tunnel."),
    Bench("websocket", "WebSocket echo through the relay's browser side",
          "bench/ws_echo_bench.py", ("--seconds", "5"), ("--seconds", "2"), 300,
          "Round trips and MB/s of a WebSocket echo through the relay (frames parsed both "
          "ways), beside direct TCP to the echo device, with the relay's CPU per message."),
    Bench("control", "Control channel: idle installations on one portal",
          "bench/control_bench.py", ("--sizes", "100,1000,3000"), ("--sizes", "100,500"), 1200,
          "N agents' mTLS gRPC control streams held by one portal process."),
    Bench("identity", "Device identity checks (SNMP)",
          "bench/identity_bench.py", ("--warm", "200"), ("--warm", "50"), 600,
          "First and warm identity checks against the simulated printer, v2c and v3."),
    Bench("devicesim", "The simulated printer, direct",
          "bench/devicesim_bench.py", ("--mb", "200"), ("--mb", "50", "--pages", "20"), 600,
          "What the simulated device itself does without any ewsgate in the path: the ceiling "
          "of the paths above."),
    Bench("portal_api", "Portal API",
          "bench/portal_api_bench.py", (), (), 600,
          "Service-layer and API latency over a realistic inventory."),
)

REFERENCE = (Path(__file__).resolve().parent / "reference.md").read_text()

_ROW = re.compile(r"^\|(.+)\|\s*$")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def run_one(bench: Bench, quick: bool) -> tuple[str, float, int]:
    args = [sys.executable, str(REPO / bench.script), *(bench.quick_args if quick else bench.args)]
    started = time.monotonic()
    try:
        done = subprocess.run(args, cwd=REPO, capture_output=True, text=True,
                              timeout=bench.timeout, check=False)
        out, code = done.stdout, done.returncode
        if code != 0:
            out += f"\n\n(exit code {code}; stderr ends:)\n\n```\n{done.stderr[-2000:]}\n```\n"
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        out, code = partial + f"\n\n(stopped after {bench.timeout:.0f} s)\n", -1
    return out, time.monotonic() - started, code


def tables(text: str) -> list[list[list[str]]]:
    """Markdown tables in ``text`` as lists of rows of cells (separator rows dropped)."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in text.splitlines():
        match = _ROW.match(line.strip())
        if match:
            cells = [cell.strip() for cell in match.group(1).split("|")]
            if not all(set(cell) <= set("-: ") for cell in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def first_number(cell: str) -> float | None:
    match = _NUMBER.search(cell.replace(",", ""))
    return float(match.group(0)) if match else None


def plot_metric_rows(table: list[list[str]], wanted: list[str], path: Path, title: str) -> bool:
    """Bar charts, one panel per wanted metric row, one bar per column (path)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    header, rows = table[0], table[1:]
    picked = [row for row in rows if any(row[0].startswith(w) for w in wanted)]
    if not picked:
        return False
    fig, axes = plt.subplots(1, len(picked), figsize=(4.2 * len(picked), 3.4), squeeze=False)
    for axis, row in zip(axes[0], picked, strict=True):
        values = [first_number(cell) or 0.0 for cell in row[1:]]
        axis.bar(header[1:], values, color=["#2563eb", "#64748b", "#f59e0b", "#10b981",
                                            "#ef4444"][: len(values)])
        axis.set_title(row[0], fontsize=9)
        axis.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke test)")
    parser.add_argument("--only", nargs="*", default=None, help="names: " +
                        ", ".join(b.name for b in BENCHES))
    parser.add_argument("--output", type=Path, default=DOCS / "performance.md")
    args = parser.parse_args()

    sections: list[str] = []
    plots: list[str] = []
    for bench in BENCHES:
        if args.only and bench.name not in args.only:
            continue
        if not (REPO / bench.script).exists():
            continue
        print(f"== {bench.name}: {bench.script}", file=sys.stderr, flush=True)
        out, seconds, code = run_one(bench, args.quick)
        status = "" if code == 0 else f" — **did not finish cleanly (exit {code})**"
        sections.append(f"## {bench.title}\n\n{bench.why}\n\n`python {bench.script} "
                        f"{' '.join(bench.quick_args if args.quick else bench.args)}` "
                        f"({seconds:.0f} s){status}\n\n{out.strip()}\n")
        found = tables(out)
        if bench.name in ("tunnel", "relay") and found:
            image = args.output.parent / "img" / f"{bench.name}.png"
            wanted = ["bulk", "1 KiB", "64 KiB", "1KiB", "64KiB", "time to first"]
            if plot_metric_rows(found[0], wanted[:4], image, bench.title):
                plots.append(f"![{bench.title}](img/{image.name})")

    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = [
        "# Performance",
        "",
        f"Written by `make bench` (`python bench/run_all.py`) on {stamp}; every figure below "
        "comes from that run on a 2-core machine that the load generator, the origin and every "
        "ewsgate process share, so compare ratios within one table, not across runs "
        "(run-to-run noise is about ±20 %).",
        "",
        "## Reference paths",
        "",
        REFERENCE,
        *plots,
        "",
        *sections,
    ]
    args.output.write_text("\n".join(body))
    print(f"wrote {args.output}", file=sys.stderr)
    # the browser suite's time-to-first-page figures, when it has run, as their own section
    if args.output == DOCS / "performance.md":
        subprocess.run([sys.executable, str(REPO / "bench" / "time_to_first_page.py")],
                       cwd=REPO, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
