"""Who may open a tunnel: client certificates and tickets, over real TLS on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from ewsgate import pki
from ewsgate.aio.errors import TunnelError
from ewsgate.tunnel import ErrorCode

from .conftest import World

pytestmark = pytest.mark.integration


async def _refused(world: World, spec_kwargs: dict[str, object] | None = None,
                   **client_kwargs: object) -> TunnelError:
    client = world.client(**client_kwargs)  # type: ignore[arg-type]
    spec = world.spec(**(spec_kwargs or {}))  # type: ignore[arg-type]
    with pytest.raises(TunnelError) as info:
        await client.open_session(spec)
    assert world.registry.lookup(spec.session_id) is None
    return info.value


def _cert_files(world: World, name: str, issued: pki.IssuedCert) -> dict[str, object]:
    cert, key = world.tmp / f"{name}.crt", world.tmp / f"{name}.key"
    cert.write_bytes(pki.cert_to_pem(issued.cert))
    key.write_bytes(pki.key_to_pem(issued.key))
    return {"cert": cert, "key": key}


async def test_a_valid_ticket_and_certificate_are_admitted(world: World) -> None:
    client = world.client()
    spec = world.spec()
    session = await client.open_session(spec)
    info = world.registry.lookup(spec.session_id)
    assert info is not None and info.installation_id == "inst-1"
    assert info.device.ip == "127.0.0.1" and session.generation == 1


async def test_a_certificate_from_a_foreign_ca_is_refused(world: World) -> None:
    now = dt.datetime.now(dt.UTC)
    foreign = pki.create_ca("someone else's CA", now=now)
    err = await _refused(world, **_cert_files(world, "foreign",
                                              foreign.issue_installation_cert("inst-1", now=now)))
    assert isinstance(err, TunnelError)


async def test_an_expired_client_certificate_is_refused(world: World) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    expired = world.ca.issue_installation_cert("inst-1", now=past,
                                               lifetime=dt.timedelta(hours=1))
    await _refused(world, **_cert_files(world, "expired", expired))


async def test_a_server_certificate_is_not_a_client_certificate(world: World) -> None:
    now = dt.datetime.now(dt.UTC)
    server = world.ca.issue_server_cert(dns_names=["inst-1"], now=now)
    await _refused(world, **_cert_files(world, "server", server))


async def test_a_ticket_for_another_relay_is_refused_with_the_reason(world: World) -> None:
    world.counter += 1
    sid = f"s{world.counter}"
    err = await _refused(world, {"session_id": sid,
                                 "ticket": world.ticket(sid, relay_id="relay-2")})
    assert err.code is ErrorCode.TICKET_REFUSED
    assert "wrong_audience" in err.message


async def test_a_ticket_for_another_installation_is_refused(world: World) -> None:
    world.counter += 1
    sid = f"s{world.counter}"
    err = await _refused(world, {"session_id": sid,
                                 "ticket": world.ticket(sid, installation="inst-2")})
    assert err.code is ErrorCode.TICKET_REFUSED
    assert "wrong_installation" in err.message and "inst-2" in err.message


async def test_an_expired_ticket_is_refused(world: World) -> None:
    world.counter += 1
    sid = f"s{world.counter}"
    ticket = world.ticket(sid, ttl=1)
    await asyncio.sleep(1.1)
    err = await _refused(world, {"session_id": sid, "ticket": ticket})
    assert err.code is ErrorCode.TICKET_REFUSED and "expired" in err.message


async def test_a_forged_ticket_is_refused(world: World) -> None:
    world.counter += 1
    sid = f"s{world.counter}"
    header, payload, signature = world.ticket(sid).split(".")
    forged = ".".join([header, payload, signature[::-1]])
    err = await _refused(world, {"session_id": sid, "ticket": forged})
    assert err.code is ErrorCode.TICKET_REFUSED


async def test_a_replayed_ticket_is_refused_but_a_reconnect_is_admitted(world: World) -> None:
    first = world.client()
    spec = world.spec()
    session = await first.open_session(spec)
    # the same ticket, same connection generation, from another connection: a replay
    replay = world.client()
    with pytest.raises(TunnelError) as info:
        await replay.open_session(spec)
    assert "replayed" in info.value.message
    # the genuine agent loses its connection: it reconnects with the next generation
    live = world.registry.tunnel(spec.session_id)
    assert live is not None
    live.connection.abort(ErrorCode.INTERNAL_ERROR, "network blip")
    async with asyncio.timeout(10):
        while (again := world.registry.tunnel(spec.session_id)) is None or again is live:
            await asyncio.sleep(0.05)
    assert session.generation == 2 and again.ticket.generation == 2


async def test_a_session_closed_by_the_portal_cannot_be_reconnected(world: World) -> None:
    client = world.client()
    spec = world.spec()
    session = await client.open_session(spec)
    started = asyncio.get_running_loop().time()
    assert await world.registry.close_session(spec.session_id, "ended by the technician")
    await asyncio.wait_for(asyncio.shield(session.ended), 2)
    assert asyncio.get_running_loop().time() - started < 2
    assert session.state.value == "ended" and "ended by the technician" in session.reason
    assert world.registry.is_closed(spec.session_id)
