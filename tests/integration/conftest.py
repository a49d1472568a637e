"""The whole system, for the end-to-end tests: real processes on loopback, started once.

``demo`` starts :class:`ewsgate.demo.DemoStack` (portal, relay, an enrolled agent and one
simulated printer per profile) once per test session, on free ports, in a temporary directory,
and stops every process at the end. ``short_demo`` is a second, separate stack whose Remote
Technician sessions last only a few seconds, for the real expiry run.

``session_client`` gives an httpx client that resolves ``*.rt.localhost`` to loopback (as
Chromium does), signs in to the portal as a given login, opens a session on a device through the
API and follows the relay's OAuth redirects.
"""

from __future__ import annotations

import random
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from ewsgate.demo import DemoInfo, DemoStack

PORT_SPAN = 40


def _free_block(span: int = PORT_SPAN) -> int:
    """A base port whose next ``span`` ports are all free right now (TCP and UDP).

    The block is drawn below the kernel's ephemeral range (32768+ on Linux): the stack binds
    its ports one by one over a minute, and ports the kernel hands out for outgoing connections
    and ``port 0`` listeners (every other test on the machine) would otherwise collide."""
    for _ in range(200):
        base = random.randrange(10000, 32000 - span)
        ok = True
        for port in range(base, base + span):
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as probe:
                    try:
                        probe.bind(("127.0.0.1", port))
                    except OSError:
                        ok = False
                        break
            if not ok:
                break
        if ok:
            return base
    raise RuntimeError("no block of free loopback ports")


def _room_for_the_suite(info: DemoInfo) -> None:
    """The suite shares one stack: its technician opens many sessions on one device, and a
    session may sit unused for minutes between tests. The default quotas (1 per technician per
    device) and idle timeout (10 min) are tested where they are the subject
    (tests/sessions/test_policy_*.py, test_read_only_browser.py); here the demo customer's
    policy makes room for the suite."""
    client, csrf = sign_in(info, "administrator")
    try:
        customers = client.get(f"{info.api_url}/customers")
        assert customers.status_code == 200, customers.text
        body = customers.json()
        rows = body["items"] if isinstance(body, dict) else body
        [acme] = [c for c in rows if c["name"] == "Acme Logistics"]
        answer = client.put(f"{info.api_url}/customers/{acme['id']}/policy", json={
            "max_sessions_per_device": 100, "max_sessions_per_user_per_device": 100,
            "idle_timeout_minutes": 30},
            headers={"X-CSRF-Token": csrf, "Origin": info.portal_url})
        assert answer.status_code == 200, answer.text
    finally:
        client.close()


@pytest.fixture(scope="session")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    """The shared stack itself (its supervisor, ``restart``); most tests want ``demo``."""
    stack = DemoStack(tmp_path_factory.mktemp("demo") / "data", _free_block(),
                      passwords={"administrator": "admin-pass-1", "configurer": "config-pass-1",
                                 "user": "tech-pass-1"})
    with stack:
        assert stack.info is not None
        _room_for_the_suite(stack.info)
        yield stack


@pytest.fixture(scope="session")
def demo(demo_stack: DemoStack) -> DemoInfo:
    assert demo_stack.info is not None
    return demo_stack.info


@pytest.fixture(scope="session")
def short_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoInfo]:
    """A separate stack whose sessions last 6 seconds (the real short-expiry run)."""
    stack = DemoStack(tmp_path_factory.mktemp("short") / "data", _free_block(),
                      profiles=("absolute",), session_seconds=6,
                      passwords={"administrator": "admin-pass-1", "configurer": "config-pass-1",
                                 "user": "tech-pass-1"})
    with stack as info:
        _room_for_the_suite(info)
        yield info


class _LocalhostBackend(httpcore.SyncBackend):
    """Resolves every ``*.localhost`` name to 127.0.0.1, as browsers do (RFC 6761)."""

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        if host == "localhost" or host.endswith(".localhost"):
            host = "127.0.0.1"
        return super().connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                   socket_options=socket_options)


def localhost_client(ca_file: str | Path, **kwargs: Any) -> httpx.Client:
    """An httpx client trusting the demo CA and resolving ``*.localhost`` to loopback."""
    transport = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=str(ca_file)))
    transport._pool._network_backend = _LocalhostBackend()  # no public hook for a resolver
    return httpx.Client(transport=transport, timeout=30, **kwargs)


@dataclass
class OpenedSession:
    client: httpx.Client
    session: dict[str, Any]
    csrf: str

    @property
    def url(self) -> str:
        return str(self.session["url"])

    @property
    def id(self) -> str:
        return str(self.session["session_id"])


def sign_in(info: DemoInfo, login: str) -> tuple[httpx.Client, str]:
    """A client signed in to the portal as ``login`` (administrator/configurer/technician)."""
    client = localhost_client(info.ca_file)
    credentials = info.logins[login]
    answer = client.post(f"{info.api_url}/auth/login",
                         json={"email": credentials["email"], "password": credentials["password"]})
    assert answer.status_code == 200, answer.text
    csrf = client.get(f"{info.api_url}/auth/me").json()["csrf_token"]
    return client, csrf


def open_session(info: DemoInfo, profile: str, login: str = "technician",
                 timeout: float = 30.0) -> OpenedSession:
    """Sign in, start a session on ``profile``'s device and wait until it is ready."""
    client, csrf = sign_in(info, login)
    device = info.device(profile)
    answer = client.post(f"{info.api_url}/devices/{device.id}/remote-sessions", json={},
                         headers={"X-CSRF-Token": csrf, "Origin": info.portal_url})
    assert answer.status_code == 201, answer.text
    session = answer.json()
    deadline = time.monotonic() + timeout
    while session["status"] not in ("ready", "failed", "ended"):
        assert time.monotonic() < deadline, f"session not ready: {session}"
        time.sleep(0.1)
        session = client.get(f"{info.api_url}/remote-sessions/{session['session_id']}").json()
    assert session["status"] == "ready", session
    return OpenedSession(client, session, csrf)


@pytest.fixture
def session_factory(demo: DemoInfo) -> Iterator[Any]:
    """``session_factory(profile, login="technician") -> OpenedSession``; ends them afterwards."""
    opened: list[OpenedSession] = []

    def make(profile: str, login: str = "technician") -> OpenedSession:
        session = open_session(demo, profile, login)
        opened.append(session)
        return session

    yield make
    for session in opened:
        session.client.delete(f"{demo.api_url}/remote-sessions/{session.id}",
                              headers={"X-CSRF-Token": session.csrf, "Origin": demo.portal_url})
        session.client.close()
