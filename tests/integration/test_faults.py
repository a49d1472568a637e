"""Faults made for real, outcomes counted end to end (issue: nothing is lost, every outcome is
told truthfully).

- **The spool's disk** (root only: each run mounts its own small tmpfs inside its own mount
  namespace, ``unshare -m``, so nothing outside the test sees it): full to the last byte, and
  remounted read-only under the running relay. Every response the browser received complete is
  in the portal's log exactly once; while the disk is full nothing reaches the device, the
  browser gets 503 "the audit log is unavailable" with ``Retry-After`` and no sign-in starts;
  no torn line survives; the relay recovers by itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

RUN = Path(__file__).with_name("spool_faults_run.py")


def _needs_root_namespaces() -> None:
    if os.geteuid() != 0:
        pytest.skip("disk faults need root: the test mounts a tmpfs in its own mount namespace")
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("disk faults need util-linux's unshare and mount")


def _run_spool_fault(mode: str, tmp_path: Path) -> dict[str, Any]:
    _needs_root_namespaces()
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, str(RUN), mode,
         str(tmp_path / "work")],
        capture_output=True, text=True, timeout=180, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    result = next((line[7:] for line in done.stdout.splitlines() if line.startswith("RESULT ")),
                  None)
    assert done.returncode == 0 and result, done.stderr[-3000:]
    data: dict[str, Any] = json.loads(result)
    data["stderr"] = done.stderr
    return data


def _check_nothing_lost(data: dict[str, Any]) -> None:
    """Every answer the browser got is stored once, with the status it got; seqs have no gap."""
    stored = data["stored"]
    assert [e["seq"] for e in stored] == list(range(1, len(stored) + 1))  # none lost, none twice
    assert not [e for e in stored if e["outcome"] == "pending"]
    by_url = {}
    for entry in stored:
        by_url.setdefault(entry["url"], []).append(entry)
    answers = [a for phase in ("before", "during", "after") for a in data["answers"][phase]]
    for answer in answers:
        if answer["path"] == "/signin":
            continue
        entries = by_url.get(answer["path"], [])
        assert len(entries) == 1, (answer, entries)
        assert entries[0]["status"] == answer["status"], (answer, entries)
        if answer["status"] == 200:
            assert entries[0]["outcome"] == "ok" and entries[0]["bytes_out"] == answer["length"]
    assert data["torn_lines"] == 0


def test_a_full_spool_disk_fails_closed_loses_nothing_and_recovers(tmp_path: Path) -> None:
    data = _run_spool_fault("full", tmp_path)
    _check_nothing_lost(data)
    during = data["answers"]["during"]
    refused = [a for a in during if a["status"] == 503]
    delivered = [a for a in during if a["status"] == 200]
    # a few entries may still fit in the tmpfs's last page; after that everything is refused
    assert len(refused) >= 15 and len(refused) + len(delivered) == len(during)
    assert all(a["audit_page"] and a["retry_after"] for a in refused)
    assert during[-1]["status"] == 503  # the browser without a cookie: no sign-in started
    # the device saw only what was logged before the disk filled
    assert data["forwarded_during_fault"] == len(delivered)
    assert data["metrics_during"]["available"] is False
    assert data["metrics_during"]["write_failures"] >= len(refused)
    errors = [line for line in data["stderr"].splitlines()
              if line.startswith("ERROR ewsgate.relay.access_log")]
    assert len(errors) == 1  # one ERROR line says why (not one per request)
    assert "the audit log is unavailable" in errors[0] and "No space left on device" in errors[0]
    assert data["recovered_by_itself"]
    assert all(a["status"] == 200 for a in data["answers"]["after"])
    # the refusals themselves are in the log once the disk is back
    refusals = [e for e in data["stored"] if e["status"] == 503]
    assert len(refusals) == len(refused)
    assert all(e["detail"].startswith("audit_log_unavailable") for e in refusals)


def test_a_read_only_spool_keeps_shipping_and_loses_nothing(tmp_path: Path) -> None:
    """Remounted read-only under the running relay: the open segment still takes entries (the
    kernel checks the mount when a file is opened for writing), the cursor cannot be saved,
    and shipping goes on from memory instead of stopping."""
    data = _run_spool_fault("readonly", tmp_path)
    _check_nothing_lost(data)
    assert all(a["status"] == 200 for a in data["answers"]["during"][:-1])
    assert "cannot save the shipping cursor" in data["stderr"]
    assert "Read-only file system" in data["stderr"]
    assert data["metrics_during"]["ship_failures"] == 0
    # shipped while read-only: the portal has every entry of the run
    assert len(data["stored"]) == 2 + 3 * 20 + 1
