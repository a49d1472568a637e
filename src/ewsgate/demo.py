"""``ewsgate demo``: the whole system on one machine, on embedded defaults.

The demo runs the real processes, each as its own ``ewsgate`` command, on loopback:

    portal  (SQLite, a generated CA, web UI + API on BASE, gRPC control on BASE+1, enrolment BASE+2)
    relay   (browser HTTPS on BASE+3 for *.rt.localhost, agent tunnels on BASE+4)
    agent   (enrolled with a one-time token, control stream to the portal)
    one simulated printer per profile (HTTP, HTTPS and SNMP on BASE+10 …)

It seeds a dealer, a customer, an installation, the devices (Remote Technician enabled), an
administrator, a configurer and a technician, writes ``DATA_DIR/demo.json`` (every URL and port,
the logins and the devices), prints how to sign in and how to trust the demo CA, and runs until
Ctrl-C or SIGTERM, when it stops every process it started.

:class:`DemoStack` is the same thing as a library: the end-to-end tests and the benchmarks start
it, use it and stop it.

Session hosts are ``s-<id>.rt.localhost``: Chromium (and every resolver following RFC 6761)
resolves ``*.localhost`` to loopback, so no DNS set-up is needed. Devices run on 127.0.0.1, a
loopback address the agent refuses to dial in production; the demo starts the agent with
:mod:`ewsgate.agent.loopback_demo`, an entry point that exists for exactly this one-machine set-up
and that no site configuration can reach.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from ewsgate.fsmode import private_dir, write_private_file
from ewsgate.supervisor import ProcessFailed, Supervisor, wait_for_port

__all__ = ["DEMO_PROFILES", "DemoDevice", "DemoInfo", "DemoStack", "run"]

DEMO_PROFILES: tuple[str, ...] = (
    "hp", "brother", "ricoh", "sharp", "absolute", "panel", "konica", "legacyhttp",
)

#: which EWS endpoints each profile's device record lists, in order (the first is the landing)
_ENDPOINTS: dict[str, tuple[str, ...]] = {
    "hp": ("https", "http"),
    "brother": ("https", "http"),
}

T = TypeVar("T")

HOST = "127.0.0.1"
DOMAIN = "rt.localhost"


@dataclass(frozen=True)
class DemoDevice:
    id: int
    profile: str
    name: str
    make: str
    model: str
    ip: str
    hostname: str
    mac: str
    serial: str
    http_port: int
    https_port: int
    snmp_port: int
    endpoints: list[dict[str, Any]]


@dataclass(frozen=True)
class DemoInfo:
    """What ``demo.json`` holds."""

    portal_url: str
    api_url: str
    grpc: str
    enrolment: str
    relay_url: str
    relay_tunnel: str
    relay_domain: str
    ca_file: str
    data_dir: str
    logins: dict[str, dict[str, str]]
    api_token: str
    customer_id: int
    installation_id: int
    relay_id: int
    devices: list[DemoDevice] = field(default_factory=list)
    logs: str = ""

    def device(self, profile: str) -> DemoDevice:
        return next(device for device in self.devices if device.profile == profile)


def _run_to_completion(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` that also works when the caller's thread already runs an event loop.

    DemoStack is a blocking library called from tests and benchmarks, some of which hold a
    running loop in their thread (async tests, Playwright's sync API): ``asyncio.run`` refuses
    there, so the coroutine then runs on a fresh loop in a short-lived worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="demo-run") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _password() -> str:
    return "demo-" + secrets.token_urlsafe(9)


class DemoStack:
    """The demo system as a context manager: ``with DemoStack(dir, port) as info: …``."""

    def __init__(self, data_dir: Path, base_port: int, *,
                 profiles: Sequence[str] = DEMO_PROFILES,
                 session_seconds: int | None = None,
                 passwords: dict[str, str] | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        if base_port < 1024 or base_port + 10 + 3 * len(profiles) > 65535:
            raise ValueError(f"--base-port {base_port}: the demo needs ports {base_port} to "
                             f"{base_port + 10 + 3 * len(profiles)}; choose 1024 to "
                             f"{65535 - 10 - 3 * len(profiles)}")
        self.data_dir = data_dir.resolve()
        self.base = base_port
        self.profiles = tuple(profiles)
        self.session_seconds = session_seconds
        self.passwords = passwords or {}
        self.extra_env = extra_env
        self._supervisor: Supervisor | None = None
        self.info: DemoInfo | None = None

    # ports -------------------------------------------------------------------------------
    @property
    def portal_port(self) -> int:
        return self.base

    @property
    def grpc_port(self) -> int:
        return self.base + 1

    @property
    def enrol_port(self) -> int:
        return self.base + 2

    @property
    def relay_port(self) -> int:
        return self.base + 3

    @property
    def tunnel_port(self) -> int:
        return self.base + 4

    def device_ports(self, index: int) -> tuple[int, int, int]:
        first = self.base + 10 + 3 * index
        return first, first + 1, first + 2

    # lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> DemoInfo:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def supervisor(self) -> Supervisor:
        if self._supervisor is None:
            raise RuntimeError("the demo has not started")
        return self._supervisor

    def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.stop()

    def restart(self, name: str, *, kill: bool = False, timeout: float = 60.0) -> None:
        """Stop one process (``kill=True``: SIGKILL, as in a crash) and start it again with the
        same command line, waiting for the relay's or portal's port when it is one of those.

        The end-to-end tests use it to show that the relay's log survives ``kill -9``."""
        managed = next((p for p in self.supervisor.processes if p.name == name), None)
        if managed is None:
            raise ProcessFailed(f"no process named {name!r} in this demo; it runs "
                                f"{', '.join(p.name for p in self.supervisor.processes)}")
        module, command = managed.args[2], managed.args[3:]  # ``python -m MODULE COMMAND…``
        ports = {"relay": self.relay_port, "portal": self.portal_port}
        self.supervisor.stop(name, kill=kill)
        wait_port = (HOST, ports[name]) if name in ports else None
        self.supervisor.start(name, command, wait_port=wait_port, timeout=timeout,
                              module=module)

    def _cli(self, *args: str) -> str:
        """Run one short ``ewsgate`` command to completion and return its stdout."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("EWSGATE_")}
        done = subprocess.run([sys.executable, "-m", "ewsgate", *args], capture_output=True,
                              text=True, env=env, timeout=120, check=False)
        if done.returncode != 0:
            raise ProcessFailed(f"ewsgate {' '.join(args[:2])} failed ({done.returncode}):\n"
                                f"{done.stderr.strip()}")
        return done.stdout

    def _fresh_data_dir(self) -> None:
        """Start from an empty directory; an earlier demo's directory is reused, nothing else."""
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            earlier = (self.data_dir / "demo.json").exists() or (self.data_dir / "portal").exists()
            if not earlier:
                raise ProcessFailed(
                    f"{self.data_dir} is not empty and holds no earlier demo; choose an empty "
                    "or new --data-dir")
            shutil.rmtree(self.data_dir)
        private_dir(self.data_dir / "logs")
        private_dir(self.data_dir)

    def start(self) -> DemoInfo:
        self._fresh_data_dir()
        self._supervisor = Supervisor(self.data_dir / "logs", env=self.extra_env)
        portal_dir = self.data_dir / "portal"
        relay_dir = self.data_dir / "relay"
        agent_dir = self.data_dir / "agent"
        for directory in (portal_dir, relay_dir, agent_dir):
            private_dir(directory)
        portal_url = f"http://{HOST}:{self.portal_port}"
        portal_db = ["--data-dir", str(portal_dir)]

        # 1. database, the administrator and the relay registration (operator CLI commands)
        admin_password = self.passwords.get("administrator") or _password()
        self._cli("db", "upgrade", *portal_db)
        self._cli("admin", "create-user", *portal_db, "--email", "admin@demo.example",
                  "--password", admin_password, "--role", "administrator",
                  "--name", "Demo Administrator")
        token = self._cli("admin", "create-token", *portal_db, "--email",
                          "admin@demo.example", "--token-name", "demo").strip().splitlines()[-1]
        relay_toml = self._cli("admin", "create-relay", *portal_db, "--name", "demo-relay",
                               "--public-domain", DOMAIN, "--tunnel-url",
                               f"{HOST}:{self.tunnel_port}", "--public-port",
                               str(self.relay_port))
        (relay_dir / "relay.toml").write_text(relay_toml)
        os.chmod(relay_dir / "relay.toml", 0o600)
        credentials = {key.strip(): value.strip().strip('"') for key, _, value in
                       (line.partition("=") for line in relay_toml.splitlines())
                       if key.strip() in ("relay-id", "relay-secret")}
        relay_id = int(credentials["relay-id"])

        # 2. the portal
        portal_args = ["portal", "--listen", f"{HOST}:{self.portal_port}",
                       "--grpc-listen", f"{HOST}:{self.grpc_port}",
                       "--enrol-listen", f"{HOST}:{self.enrol_port}",
                       *portal_db, "--public-url", portal_url]
        if self.session_seconds is not None:
            portal_args += ["--remote-session-seconds", str(self.session_seconds)]
        self.supervisor.start("portal", portal_args, wait_port=(HOST, self.portal_port),
                              timeout=60)
        if not wait_for_port(HOST, self.enrol_port, timeout=30):
            raise ProcessFailed("the portal's enrolment port did not open")

        api = httpx.Client(base_url=f"{portal_url}/api/v1",
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
        try:
            info = self._seed(api, portal_url, token, admin_password, relay_id)
        finally:
            api.close()

        # 3. the simulated printers
        for device in info.devices:
            self.supervisor.start(
                f"device-{device.profile}",
                ["devicesim", "--profile", device.profile,
                 "--http", f"{HOST}:{device.http_port}", "--https", f"{HOST}:{device.https_port}",
                 "--snmp", f"{HOST}:{device.snmp_port}", "--mac", device.mac,
                 "--serial", device.serial, "--hostname", device.hostname],
                wait_port=(HOST, device.http_port), timeout=30)

        # 4. the relay (its certificates come from the portal's CA)
        from ewsgate.relay.portal_certificate import fetch_relay_certificates

        _run_to_completion(fetch_relay_certificates(portal_url, credentials["relay-id"],
                                                    credentials["relay-secret"], relay_dir))
        self.supervisor.start(
            "relay",
            ["relay", "--config", str(relay_dir / "relay.toml"),
             "--listen", f"{HOST}:{self.relay_port}", "--tunnel-listen",
             f"{HOST}:{self.tunnel_port}", "--domain", DOMAIN, "--portal-url", portal_url,
             "--data-dir", str(relay_dir), "--public-port", str(self.relay_port),
             "--drain-timeout", "0"],  # stopping the demo (or restarting its relay) is no drain
            wait_port=(HOST, self.relay_port), timeout=60)

        # 5. the agent: enrol with a one-time token, then keep the control stream up
        with httpx.Client(base_url=f"{portal_url}/api/v1",
                          headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
            answer = api.post(f"/installations/{info.installation_id}/enrolment-tokens", json={})
            _check(answer, "create an enrolment token")
            enrol_token = answer.json()["token"]
            self._cli("agent", "enroll", "--portal", f"{HOST}:{self.enrol_port}",
                      "--token", enrol_token, "--data-dir", str(agent_dir))
            self.supervisor.start("agent", [str(agent_dir)],
                                  module="ewsgate.agent.loopback_demo")
            deadline = time.monotonic() + 30
            while True:
                self.supervisor.check()
                state = api.get(f"/installations/{info.installation_id}")
                _check(state, "read the installation")
                if state.json().get("online"):
                    break
                if time.monotonic() > deadline:
                    raise ProcessFailed("the demo agent did not come online within 30 s; see "
                                        f"{self.supervisor.log_dir / 'agent.log'}")
                time.sleep(0.2)

        # it lists the seeded logins: the user's only (0600)
        write_private_file(self.data_dir / "demo.json", json.dumps(asdict(info), indent=2))
        self.info = info
        return info

    def _seed(self, api: httpx.Client, portal_url: str, token: str, admin_password: str,
              relay_id: int) -> DemoInfo:
        customer = _post(api, "/customers", {"name": "Acme Logistics"})
        installation = _post(api, "/installations", {"customer_id": customer["id"],
                                                     "name": "Acme HQ print room"})
        logins = {"administrator": {"email": "admin@demo.example", "password": admin_password}}
        for role, email, name in (("configurer", "configurer@demo.example", "Casey Configurer"),
                                  ("user", "technician@demo.example", "Taylor Technician")):
            password = self.passwords.get(role) or _password()
            user = _post(api, "/users", {"email": email, "password": password, "name": name})
            _post(api, "/role-assignments", {"user_id": user["id"], "role": role,
                                             "customer_id": customer["id"]})
            logins["technician" if role == "user" else role] = {"email": email,
                                                                 "password": password}

        from ewsgate.devicesim.profiles import profile_class

        configurer_token = self._cli(
            "admin", "create-token", "--data-dir", str(self.data_dir / "portal"), "--email",
            "configurer@demo.example", "--token-name", "demo").strip().splitlines()[-1]
        configurer = httpx.Client(base_url=str(api.base_url), timeout=30,
                                  headers={"Authorization": f"Bearer {configurer_token}"})
        devices: list[DemoDevice] = []
        for index, profile in enumerate(self.profiles):
            profile_info = profile_class(profile).info
            http_port, https_port, snmp_port = self.device_ports(index)
            ports = {"http": http_port, "https": https_port}
            endpoints = [{"scheme": scheme, "port": ports[scheme]}
                         for scheme in _ENDPOINTS.get(profile, ("http", "https"))]
            make = profile_info.snmp_vendor
            hostname = profile_info.hostname_prefix + profile_info.mac.replace(":", "")[-6:].upper()
            created = _post(api, "/devices", {
                "installation_id": installation["id"],
                "name": f"{profile_info.make} {profile_info.model}",
                "make": make, "model": profile_info.model, "ip": HOST, "hostname": hostname,
                "mac": profile_info.mac, "serial": profile_info.serial,
                "ews_endpoints": endpoints,
                "identity_method": "serial" if index % 2 else "mac",
                "snmp_version": "2c", "snmp_port": snmp_port, "snmp_community": "public",
            })
            # only a Remote Technician Configurer may switch it on, as in real life
            answer = configurer.put(f"/devices/{created['id']}/remote-technician",
                                    json={"enabled": True})
            _check(answer, f"enable Remote Technician on {created['name']}")
            devices.append(DemoDevice(
                id=created["id"], profile=profile, name=created["name"], make=created["make"],
                model=profile_info.model, ip=HOST, hostname=hostname, mac=profile_info.mac,
                serial=profile_info.serial, http_port=http_port, https_port=https_port,
                snmp_port=snmp_port, endpoints=endpoints))
        configurer.close()
        logins["approver"] = self._seed_approval_customer(api)
        return DemoInfo(
            portal_url=portal_url, api_url=f"{portal_url}/api/v1",
            grpc=f"{HOST}:{self.grpc_port}", enrolment=f"{HOST}:{self.enrol_port}",
            relay_url=f"https://<session>.{DOMAIN}:{self.relay_port}/",
            relay_tunnel=f"{HOST}:{self.tunnel_port}", relay_domain=DOMAIN,
            ca_file=str(self.data_dir / "portal" / "ca" / "ca.crt"),
            data_dir=str(self.data_dir), logins=logins, api_token=token,
            customer_id=customer["id"], installation_id=installation["id"], relay_id=relay_id,
            devices=devices, logs=str(self.supervisor.log_dir))


    def _seed_approval_customer(self, api: httpx.Client) -> dict[str, str]:
        """A second customer whose policy requires approval and a reason, with its Customer
        Approver (and the technician allowed there, so requests can be tried once a site of
        that customer is enrolled); returns the approver's login."""
        customer = _post(api, "/customers", {"name": "Banco Meridional"})
        _post(api, "/installations", {"customer_id": customer["id"],
                                      "name": "Banco Meridional branch 12"})
        answer = api.put(f"/customers/{customer['id']}/policy", json={
            "approval": "required", "reason": "required", "idle_timeout_minutes": 10})
        _check(answer, "set the policy of the second demo customer")
        email, password = "approver@demo.example", self.passwords.get("approver") or _password()
        user = _post(api, "/users", {"email": email, "password": password,
                                     "name": "Ana Aprovadora"})
        _post(api, "/role-assignments", {"user_id": user["id"], "role": "approver",
                                         "customer_id": customer["id"]})
        listed = api.get("/users")
        _check(listed, "list the demo users")
        technician = next((u for u in listed.json() if u.get("email") ==
                           "technician@demo.example"), None)
        if technician is not None:
            _post(api, "/role-assignments", {"user_id": technician["id"], "role": "user",
                                             "customer_id": customer["id"]})
        return {"email": email, "password": password, "customer": customer["name"],
                "customer_id": str(customer["id"])}


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code >= 400:
        raise ProcessFailed(f"could not {what}: HTTP {response.status_code} {response.text}")


def _post(api: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post(path, json=body)
    _check(response, f"POST {path}")
    created: dict[str, Any] = response.json()
    return created


def _banner(info: DemoInfo) -> str:
    lines = [
        "",
        "ewsgate demo is running.",
        "",
        f"  Portal:        {info.portal_url}/",
        f"  API (OpenAPI): {info.api_url}/openapi.json",
        f"  Relay:         {info.relay_url}  (tunnels on {info.relay_tunnel})",
        "",
        "  Sign in as:",
    ]
    for role, login in info.logins.items():
        lines.append(f"    {role:<14} {login['email']:<28} {login['password']}"
                     + (f"  ({login['customer']}: approval and a reason required)"
                        if "customer" in login else ""))
    lines += [
        "",
        "  Devices (Remote Technician enabled; open one as the technician):",
    ]
    for device in info.devices:
        lines.append(f"    #{device.id:<3} {device.profile:<11} {device.name:<40} "
                     f"http :{device.http_port}  https :{device.https_port}  "
                     f"snmp :{device.snmp_port}")
    lines += [
        "",
        "  Session pages are served by the relay with a certificate from the demo CA.",
        f"  To trust it: import {info.ca_file} as an authority in your browser",
        "  (Chromium: Settings → Privacy and security → Security → Manage certificates →",
        "  Authorities → Import), or accept the warning once per session host.",
        "",
        f"  Everything the demo opened is in {info.data_dir}/demo.json; logs in {info.logs}.",
        "  Press Ctrl-C to stop everything.",
        "",
    ]
    return "\n".join(lines)


def run(values: dict[str, Any]) -> int:
    """``ewsgate demo``: start everything, print the logins, wait for Ctrl-C."""
    stack = DemoStack(Path(values["data_dir"]), int(values["base_port"]))
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        print(f"starting the demo in {stack.data_dir} on ports {stack.base}…", flush=True)
        info = stack.start()
        print(_banner(info), flush=True)
        while not stopping:
            stack.supervisor.check()
            time.sleep(0.5)
    except ProcessFailed as exc:
        print(f"ewsgate demo: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping the demo…", flush=True)
        stack.stop()
    return 0
