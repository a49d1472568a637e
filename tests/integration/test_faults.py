"""Faults made for real, outcomes counted end to end (issue: nothing is lost, every outcome is
told truthfully).

- **kill -9** of the relay and of the portal in the middle of a loop of requests through the
  whole demo system: every response the browser got is in the job's log exactly once (no seq
  missing or twice); while the relay is away a signed-in browser is told "reconnecting", never
  "no session here".
- **An agent restart** (kill -9, started again): the portal re-sends ``OpenSession`` with a
  fresh ticket when its control stream is back, and the same session serves pages again.

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
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from .conftest import open_session

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


def test_a_response_whose_completion_cannot_be_logged_is_not_delivered(
        tmp_path: Path) -> None:
    """The disk fills while the device answers: the begin is spooled, the completion is not,
    so the browser gets the 503 page instead of the device's 200 — and the log says so."""
    data = _run_spool_fault("fill-mid-request", tmp_path)
    assert [path.split("?")[0] for path in data["device_saw"]][-2:] == ["/fill", "/ok"]
    withheld = data["withheld"]
    assert withheld["status"] == 503 and withheld["audit_page"] and withheld["retry_after"]
    assert data["after"]["status"] == 200
    [entry] = [e for e in data["stored"] if e["url"].startswith("/fill")]
    assert entry["outcome"] == "error" and entry["status"] == 503
    assert entry["detail"].startswith("audit_log_unavailable")
    assert not [e for e in data["stored"] if e["outcome"] == "pending"]


def test_a_relay_started_on_a_read_only_spool_refuses_then_recovers_by_itself(
        tmp_path: Path) -> None:
    data = _run_spool_fault("readonly-start", tmp_path)
    assert data["available_at_start"] is False
    [signin] = data["answers"]["during"]
    assert signin["status"] == 503 and signin["audit_page"] and signin["retry_after"]
    assert data["forwarded_during_fault"] == 0
    assert data["recovered_by_itself"]
    assert all(a["status"] == 200 for a in data["answers"]["after"])
    stored = data["stored"]
    assert [e["seq"] for e in stored] == list(range(1, len(stored) + 1))
    delivered = {a["path"] for a in data["answers"]["after"]}
    assert delivered <= {e["url"] for e in stored if e["outcome"] == "ok"}


# -- the whole system, real processes: kill -9 and restarts -------------------------------------

def _relay_origin(opened: Any) -> str:
    parts = urlsplit(opened.url)
    return f"{parts.scheme}://{parts.netloc}"


def _signed_in(opened: Any) -> str:
    origin = _relay_origin(opened)
    page = opened.client.get(origin + "/", follow_redirects=True)
    assert page.status_code == 200, (page.status_code, page.text[:300])
    return origin


def _job_log(opened: Any, info: Any, until: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = opened.client.get(f"{info.api_url}/jobs/{opened.session['job_id']}/log")
        except httpx.HTTPError:
            answer = None  # the portal is restarting
        if answer is not None and answer.status_code == 200:
            entries: list[dict[str, Any]] = answer.json()["entries"]
            if until(entries):
                return entries
        assert time.monotonic() < deadline, "the job's log never got there"
        time.sleep(0.3)


def _loop(opened: Any, origin: str, stop: threading.Event, answers: list[tuple[str, Any]],
          limit: int = 400) -> None:
    """GETs one after another (bounded: ``limit`` requests), recording what came back."""
    for i in range(limit):
        if stop.is_set():
            return
        url = f"/app/api/status.json?loop={i}"
        try:
            response = opened.client.get(origin + url, timeout=10)
            answers.append((url, (response.status_code, response.text[:400])))
        except httpx.HTTPError as exc:
            answers.append((url, (None, type(exc).__name__)))
        time.sleep(0.02)


def _kill_mid_loop(demo_stack: Any, demo: Any, name: str) -> tuple[Any, list[tuple[str, Any]]]:
    opened = open_session(demo, "absolute")
    origin = _signed_in(opened)
    answers: list[tuple[str, Any]] = []
    stop = threading.Event()
    loop = threading.Thread(target=_loop, args=(opened, origin, stop, answers), daemon=True)
    loop.start()
    try:
        time.sleep(1.0)
        assert answers and all(status == 200 for _, (status, _) in answers)
        demo_stack.restart(name, kill=True)
        restarted = len(answers)
        deadline = time.monotonic() + 60
        # until the session has served 20 more pages after the restart
        while sum(1 for _, (status, _) in answers[restarted:] if status == 200) < 20:
            assert time.monotonic() < deadline, answers[-5:]
            time.sleep(0.2)
    finally:
        stop.set()
        loop.join(20)
    counts: dict[Any, int] = {}
    for _, (status, _) in answers:
        counts[status] = counts.get(status, 0) + 1
    print(f"kill -9 {name}: {len(answers)} requests, by status {counts}")
    return opened, answers


def _count_end_to_end(opened: Any, info: Any, answers: list[tuple[str, Any]]) -> None:
    """Every 200 the browser got is in the job's log once, as ok; no seq twice or missing."""
    delivered = {url for url, (status, _) in answers if status == 200}
    entries = _job_log(opened, info, lambda e: delivered <= {x["url"] for x in e
                                                             if x["outcome"] == "ok"})
    seqs = [e["seq"] for e in entries]
    assert seqs == list(range(1, len(entries) + 1))  # 0 lost, 0 duplicated
    urls = [e["url"] for e in entries]
    assert all(urls.count(url) == 1 for url in delivered)
    assert not [e for e in entries if e["outcome"] == "pending"]


@pytest.mark.timeout(240)
def test_kill_9_of_the_relay_mid_loop_loses_nothing_and_says_reconnecting(
        demo_stack: Any, demo: Any) -> None:
    opened, answers = _kill_mid_loop(demo_stack, demo, "relay")
    try:
        assert len(answers) >= 60
        statuses = [status for _, (status, _) in answers]
        # while the relay was away: connection errors, then "reconnecting", never "no session"
        assert not [text for _, (status, text) in answers if status == 404]
        waiting = [text for _, (status, text) in answers if status == 503]
        assert all("Reconnecting" in text for text in waiting)
        assert statuses.count(200) >= 20
        assert set(statuses) <= {200, 503, None}
        _count_end_to_end(opened, demo, answers)
    finally:
        opened.client.close()


@pytest.mark.timeout(240)
def test_kill_9_of_the_portal_mid_loop_loses_nothing(demo_stack: Any, demo: Any) -> None:
    opened, answers = _kill_mid_loop(demo_stack, demo, "portal")
    try:
        # the relay and the tunnel do not need the portal to serve a live session
        statuses = [status for _, (status, _) in answers]
        assert set(statuses) == {200}, [a for a in answers if a[1][0] != 200][:3]
        _count_end_to_end(opened, demo, answers)
    finally:
        opened.client.close()


@pytest.mark.timeout(240)
def test_an_agent_restart_resumes_its_live_session(demo_stack: Any, demo: Any) -> None:
    opened = open_session(demo, "absolute")
    try:
        origin = _signed_in(opened)
        assert opened.client.get(origin + "/app/api/status.json?before").status_code == 200
        demo_stack.restart("agent", kill=True)  # the tunnel dies with it
        deadline = time.monotonic() + 90
        while (answer := opened.client.get(origin + "/app/api/status.json?after",
                                           timeout=10)).status_code != 200:
            assert time.monotonic() < deadline, (answer.status_code, answer.text[:300])
            time.sleep(0.5)
        state = opened.client.get(f"{demo.api_url}/remote-sessions/{opened.id}").json()
        assert state["status"] == "ready"
        job = opened.client.get(f"{demo.api_url}/jobs/{opened.session['job_id']}").json()
        assert job["status"] == "running"
    finally:
        opened.client.delete(f"{demo.api_url}/remote-sessions/{opened.id}",
                             headers={"X-CSRF-Token": opened.csrf, "Origin": demo.portal_url})
        opened.client.close()
