"""The agent's rotation over portal replicas: names expand to every address, a round tries
each once before the full backoff, a success keeps the good address first."""

from __future__ import annotations

import random

import pytest

from ewsgate.agent.portal_addresses import PortalAddresses, system_resolver
from ewsgate.config import HostPort, parse_host_port


def _resolver(table: dict[str, list[str]]):
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise OSError(f"{host}: name does not resolve")
        return table[host]

    return resolve, calls


def test_a_name_expands_to_every_address_and_a_round_tries_each_once() -> None:
    resolve, calls = _resolver({"portal.example": ["192.0.2.1", "192.0.2.2"],
                                "192.0.2.9": ["192.0.2.9"]})
    rotation = PortalAddresses([parse_host_port("portal.example:8444"),
                                parse_host_port("192.0.2.9:8444")], resolve=resolve,
                               rng=random.Random(1))
    seen = [rotation.current()]
    over = []
    for _ in range(3):
        over.append(rotation.advance())
        if not over[-1]:
            seen.append(rotation.current())
    assert over == [False, False, True]
    assert sorted(str(a) for a in seen) == ["192.0.2.1:8444", "192.0.2.2:8444",
                                           "192.0.2.9:8444"]
    assert str(seen[-1]) == "192.0.2.9:8444"  # a name's addresses first, in configured order
    rotation.current()  # a new round resolves again: DNS changes are seen
    assert calls.count("portal.example") == 2


def test_an_unresolved_name_is_kept_for_the_dialler_and_reported() -> None:
    resolve, _ = _resolver({})
    rotation = PortalAddresses([parse_host_port("gone.example:8444")], resolve=resolve)
    assert rotation.current() == HostPort("gone.example", 8444)
    assert "does not resolve" in rotation.unresolved["gone.example:8444"]
    assert rotation.advance() is True


def test_success_keeps_the_working_address_first() -> None:
    resolve, _ = _resolver({"a": ["10.0.0.1"], "b": ["10.0.0.2"]})
    rotation = PortalAddresses([HostPort("a", 1), HostPort("b", 1)], resolve=resolve)
    assert rotation.advance() is False
    assert rotation.current() == HostPort("10.0.0.2", 1)
    rotation.succeeded()
    assert rotation.current() == HostPort("10.0.0.2", 1)
    assert rotation.advance() is False  # that replica died: the other one next, same round
    assert rotation.current() == HostPort("10.0.0.1", 1)


def test_no_address_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        PortalAddresses([])


def test_the_system_resolver_lists_loopback() -> None:
    assert "127.0.0.1" in system_resolver("127.0.0.1", 80)


def test_the_state_keeps_the_portal_addresses(tmp_path) -> None:
    import json

    from ewsgate.agent.state import AgentState

    state = AgentState(tmp_path)
    state.info_path.write_text(json.dumps({"installation_id": "7",
                                           "control_address": "127.0.0.1:8001",
                                           "server_name": "ewsgate-portal"}))
    state.save_control_addresses([parse_host_port("a.example:8001"),
                                  parse_host_port("[2001:db8::1]:8001")])
    info = json.loads(state.info_path.read_text())
    assert info["control_addresses"] == ["a.example:8001", "[2001:db8::1]:8001"]
    assert info["control_address"] == "127.0.0.1:8001"  # the enrolment's, kept
    assert oct(state.info_path.stat().st_mode & 0o777) == "0o600"


def test_the_flag_takes_a_comma_separated_list() -> None:
    from ewsgate.agent.options import parse_host_ports

    assert parse_host_ports("a:1, b:2") == (HostPort("a", 1), HostPort("b", 2))
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_host_ports(" , ")
