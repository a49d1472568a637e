"""The API relays call, authenticated as the relay (HTTP Basic ``relay-id:secret``).

=======  =====================================  =============================================
POST     /api/v1/relay/log-batches              a batch of Remote Technician Log entries;
         /api/v1/relay/log                      stored once per (session, seq) → accepted,
                                                duplicates, rejected (index, code, message)
GET      /api/v1/relay/sessions/{id}            a session pinned to this relay: status, expiry,
                                                owner, revoked access-token ids
GET      /api/v1/relay/events                   server-sent events: a snapshot of this relay's
                                                sessions, then revocations as they happen
                                                (see :mod:`ewsgate.portal.sessions.revocation`)
POST     /api/v1/relay/certificate              ``{"csr_pem"}`` → a server certificate from
                                                the portal CA for the relay's registered names
GET      /.well-known/ewsgate-ca.pem            the portal CA certificate (public, no auth)
=======  =====================================  =============================================

Errors are the REST API's JSON (``{"error": {"code", "message"}}``); a wrong or missing relay
credential is ``401 invalid_relay_credentials``.

Relays hold no database credentials: this is everything they learn from the portal besides
the JWKS and the OAuth token endpoint. A relay sees only sessions pinned to it (others are
``404``, indistinguishable from missing ones) and can write log entries only for those.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ewsgate.portal.oauth.client_auth import authenticate_relay, parse_basic_auth
from ewsgate.portal.services import audit
from ewsgate.portal.services.errors import (
    AuthenticationFailed,
    InvalidInput,
    NotFound,
    ServiceError,
)
from ewsgate.portal.sessions.relay_certs import RelayCertError, sign_relay_csr
from ewsgate.portal.sessions.relay_log import MAX_BATCH, ingest
from ewsgate.portal.sessions.revocation import event_key, fresh, relay_changes, relay_snapshot
from ewsgate.portal.sessions.revocation_stream import RevocationStreams, StreamLagging
from ewsgate.portal.sessions.runtime import RemoteTechnician, remote_technician_of
from ewsgate.portal.sessions.status import LIVE
from ewsgate.portal.store.models import Relay, RemoteSession, User
from ewsgate.revocations import Heartbeat, encode_event

__all__ = ["CA_PATH", "router"]

router = APIRouter(tags=["relay"])

CA_PATH = "/.well-known/ewsgate-ca.pem"
MAX_BODY = 4 * 1024 * 1024
#: the event stream's quiet time before a heartbeat
EVENTS_HEARTBEAT = 5.0
#: a stream ends after this many seconds (default) and the relay reconnects and reconciles
EVENTS_MAX_SECONDS = 300
_NO_STORE = {"Cache-Control": "no-store"}


class _NoCa(ServiceError):
    code = "no_ca"
    status = 503


async def _relay(request: Request, rt: RemoteTechnician) -> Relay:
    credentials = parse_basic_auth(request.headers.get("authorization"))
    if credentials is None:
        raise AuthenticationFailed("relay authentication required: HTTP Basic with the relay "
                                   "id and secret from `ewsgate admin create-relay`",
                                   code="invalid_relay_credentials")
    async with rt.db.transaction() as session:
        relay = await authenticate_relay(session, credentials[0], credentials[1],
                                         clock=rt.clock)
    if relay is None:
        raise AuthenticationFailed("relay id or secret is wrong",
                                   code="invalid_relay_credentials")
    return relay


async def _json_body(request: Request) -> Any:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise InvalidInput("request body larger than 4 MiB; send smaller batches",
                               code="too_large")
    try:
        return json.loads(body)
    except ValueError:
        raise InvalidInput("the body is not JSON", code="invalid_json") from None


@router.post("/api/v1/relay/log-batches")
@router.post("/api/v1/relay/log")
async def ship_log(request: Request) -> Response:
    """Store a batch of log entries, each once per (session, seq)."""
    rt = remote_technician_of(request.app)
    relay = await _relay(request, rt)
    data = await _json_body(request)
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise InvalidInput('expected {"entries": [...]}', field="entries")
    if "relay_id" in data and str(data["relay_id"]) != str(relay.id):
        raise InvalidInput("relay_id differs from the authenticated relay", field="relay_id")
    entries = data["entries"]
    if len(entries) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} entries per batch", field="entries",
                           code="too_large")
    async with rt.db.transaction() as session:
        result = await ingest(session, relay.id, entries)
    return JSONResponse(result.as_json(), headers=_NO_STORE)


@router.get("/api/v1/relay/sessions/{session_id}")
async def relay_session(session_id: str, request: Request) -> Response:
    """What a relay needs to serve (or refuse) a session: status, expiry, owner, revocations."""
    rt = remote_technician_of(request.app)
    relay = await _relay(request, rt)
    async with rt.db.transaction() as session:
        row = await session.get(RemoteSession, session_id)
        if row is None or row.relay_id != relay.id:
            raise NotFound.of("remote session", session_id)
        user = await session.get(User, row.user_id) if row.user_id is not None else None
        revoked = await rt.oauth.revoked_token_ids(session, row.id)
    now = rt.clock()
    live = row.status in {s.value for s in LIVE} and row.expires_at > now
    return JSONResponse({
        "session_id": row.id,
        "status": row.status if live or row.status not in {s.value for s in LIVE} else "ended",
        "live": live,
        "reason": row.reason,
        "host": row.host,
        "url": row.url,
        "redirect_uri": row.redirect_uri,
        "expires_at": row.expires_at.isoformat(),
        "expires_at_unix": int(row.expires_at.timestamp()),
        "ended_at": row.ended_at.isoformat() if row.ended_at else None,
        "user_id": str(row.user_id) if row.user_id is not None else None,
        "user_email": user.email if user else None,
        "revoked_token_ids": revoked,
    }, headers=_NO_STORE)


@router.get("/api/v1/relay/events")
async def relay_events(request: Request, max_seconds: float = EVENTS_MAX_SECONDS) -> Response:
    """Revocations for this relay as server-sent events (see :mod:`ewsgate.revocations`).

    The stream opens with a ``snapshot`` (the relay reconciles against it), then carries
    ``session_revoked`` and ``installation_revoked`` as the replica's poller reads them
    (:mod:`ewsgate.portal.sessions.revocation_stream`, every 0.25 s), and a ``heartbeat``
    after :data:`EVENTS_HEARTBEAT` quiet seconds. It ends after ``max_seconds`` (0..3600;
    0 = the snapshot and what is pending); the relay then reconnects and gets a new snapshot.
    """
    rt = remote_technician_of(request.app)
    relay = await _relay(request, rt)
    if not 0 <= max_seconds <= 3600:
        raise InvalidInput("max_seconds must be between 0 and 3600", field="max_seconds")
    now = rt.clock()
    async with rt.db.transaction() as session:
        snapshot = await relay_snapshot(session, relay.id, now)
        pending = await relay_changes(session, relay.id, now, now) if max_seconds == 0 else []
    streams = revocation_streams(rt)

    async def stream() -> AsyncIterator[bytes]:
        yield encode_event(snapshot)
        sent = {event_key(e) for e in snapshot.revoked_sessions}
        for event in fresh(pending, sent):
            yield encode_event(event)
        if max_seconds == 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_seconds
        last = loop.time()
        async with streams.subscribe(relay.id) as subscription:
            while (left := deadline - loop.time()) > 0:
                quiet = loop.time() - last
                try:
                    batch = await subscription.next(min(left, max(0.0, EVENTS_HEARTBEAT - quiet)))
                except StreamLagging:
                    return  # the relay reconnects and reconciles
                changes = fresh(batch, sent)
                for event in changes:
                    yield encode_event(event)
                if changes:
                    last = loop.time()
                elif loop.time() - last >= EVENTS_HEARTBEAT:
                    yield encode_event(Heartbeat(server_time=rt.clock().timestamp()))
                    last = loop.time()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={**_NO_STORE, "X-Accel-Buffering": "no"})


def revocation_streams(rt: RemoteTechnician) -> RevocationStreams:
    """The replica's one revocation poller (made on first use)."""
    if rt.revocation_streams is None:
        rt.revocation_streams = RevocationStreams(rt.db, rt.clock)
    streams: RevocationStreams = rt.revocation_streams
    return streams


@router.post("/api/v1/relay/certificate")
async def relay_certificate(request: Request) -> Response:
    """Sign the relay's CSR for its registered names (see :mod:`.relay_certs`)."""
    rt = remote_technician_of(request.app)
    relay = await _relay(request, rt)
    if rt.ca is None:
        raise _NoCa("this portal has no certificate authority configured")
    data = await _json_body(request)
    csr = data.get("csr_pem") if isinstance(data, dict) else None
    if not isinstance(csr, str):
        raise InvalidInput('expected {"csr_pem": "-----BEGIN CERTIFICATE REQUEST-----..."}',
                           field="csr_pem")
    try:
        signed = sign_relay_csr(rt.ca, csr.encode("utf-8"), relay, now=rt.clock())
    except RelayCertError as exc:
        raise InvalidInput(str(exc), field="csr_pem", code=exc.code) from None
    async with rt.db.transaction() as session:
        await audit.record(session, "relay.certificate",
                           actor=audit.Principal.relay(relay.id, relay.name), target_id=relay.id,
                           after={"dns_names": signed.dns_names,
                                  "ip_addresses": signed.ip_addresses,
                                  "not_after": signed.not_after}, clock=rt.clock)
    return JSONResponse({
        "certificate_pem": signed.certificate_pem.decode("ascii"),
        "ca_certificate_pem": signed.ca_certificate_pem.decode("ascii"),
        "dns_names": signed.dns_names,
        "ip_addresses": signed.ip_addresses,
        "not_after": signed.not_after.isoformat(),
    }, headers=_NO_STORE)


@router.get(CA_PATH, include_in_schema=False)
async def ca_certificate(request: Request) -> Response:
    """The portal CA certificate (PEM), for relays verifying agents' client certificates."""
    rt = remote_technician_of(request.app)
    if rt.ca is None:
        return Response("this portal has no certificate authority configured\n",
                        status_code=404, media_type="text/plain")
    return Response(rt.ca.cert_pem, media_type="application/x-pem-file",
                    headers={"Cache-Control": "public, max-age=300"})
