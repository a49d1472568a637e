"""Legacy TLS refused by a default client and accepted by a legacy one; streamed uploads."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl

import httpx
import pytest
from cryptography import x509

from ewsgate.devicesim.tls import legacy_client_context

pytestmark = pytest.mark.integration


def _handshake(port: int, context: ssl.SSLContext) -> tuple[str | None, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        return tls.version(), tls.cipher()[0]


async def test_legacy_tls_is_refused_by_a_default_client(device_factory) -> None:
    device = await device_factory("brother", https=True)
    default = ssl.create_default_context()
    default.check_hostname = False
    default.verify_mode = ssl.CERT_NONE  # even without certificate checks
    with pytest.raises(ssl.SSLError) as refused:
        await asyncio.to_thread(_handshake, device.https.port, default)
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"  # the device says why


async def test_legacy_tls_is_accepted_by_a_legacy_client(device_factory) -> None:
    device = await device_factory("brother", https=True)
    version, cipher = await asyncio.to_thread(_handshake, device.https.port,
                                              legacy_client_context())
    assert version in ("TLSv1", "TLSv1.1") and "SHA" in cipher
    async with httpx.AsyncClient(verify=legacy_client_context()) as client:
        response = await client.get(device.url("https", "/general/status.html"))
    assert response.status_code == 200 and response.headers["server"] == "debut/1.30"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
async def test_modern_profile_refuses_tls11_and_serves_tls12(device_factory) -> None:
    device = await device_factory("hp", https=True)
    old = legacy_client_context()
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.to_thread(_handshake, device.https.port, old)
    version, _ = await asyncio.to_thread(_handshake, device.https.port, legacy_client_context())
    assert version in ("TLSv1.2", "TLSv1.3")


async def test_certificate_is_self_signed_for_the_advertised_ip(device_factory) -> None:
    device = await device_factory("hp", https=True)
    cert = x509.load_pem_x509_certificate(device.certificate.cert_pem)
    assert cert.issuer == cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:  # verifying client: untrusted issuer
            await client.get(device.url("https", "/"))


async def test_20mb_upload_hash_equals_hashlib(device_factory) -> None:
    device = await device_factory("hp", https=True)
    data = os.urandom(20 * 1024 * 1024)
    async with httpx.AsyncClient(verify=False, timeout=60) as client:
        response = await client.post(
            device.url("https", "/hp/device/FirmwareUpgrade/Upload?format=json"),
            files={"firmware": ("update.bdl", data, "application/octet-stream")},
            data={"version": "2506081_000600"})
    receipt = response.json()
    assert receipt["sha256"] == hashlib.sha256(data).hexdigest()
    assert receipt["size"] == len(data) and receipt["filename"] == "update.bdl"
    assert receipt["fields"] == {"version": "2506081_000600"}


async def test_upload_of_a_generated_stream_is_not_buffered(device_factory) -> None:
    """A chunked request body (no length known in advance) is hashed as it arrives."""
    device = await device_factory("legacyhttp")
    boundary = b"----devicesimtest"
    digest = hashlib.sha256()

    async def body():
        yield (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="firmware"; '
               b'filename="fw.bin"\r\nContent-Type: application/octet-stream\r\n\r\n')
        for i in range(80):
            block = bytes([i]) * 65536
            digest.update(block)
            yield block
        yield b"\r\n--" + boundary + b"--\r\n"

    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            device.url("http", "/firmware_upload.cgi?format=json"), content=body(),
            headers={"Content-Type": "multipart/form-data; boundary=" + boundary.decode()})
    assert response.json()["sha256"] == digest.hexdigest()
    assert response.json()["size"] == 80 * 65536


async def test_upload_html_receipt_and_raw_octet_stream(device_factory) -> None:
    device = await device_factory("panel")
    async with httpx.AsyncClient() as client:
        page = await client.post(device.url("http", "/firmware_upload.html"),
                                 files={"firmware": ("a.bin", b"abc")})
        raw = await client.post(device.url("http", "/firmware_upload.html?format=json"),
                                content=b"abc",
                                headers={"Content-Type": "application/octet-stream"})
        logs = await client.get(device.url("http", "/logs.html"))
    sha = hashlib.sha256(b"abc").hexdigest()
    assert page.status_code == 200 and f"<code>{sha}</code>" in page.text
    assert '<td id="fw-size">3</td>' in page.text
    assert raw.json()["sha256"] == sha and raw.json()["filename"] is None
    assert f"sha256={sha}" in logs.text


async def test_upload_without_a_file_part_is_refused(device_factory) -> None:
    device = await device_factory("panel")
    async with httpx.AsyncClient() as client:
        form_only = await client.post(device.url("http", "/firmware_upload.html"),
                                      files={"note": (None, "hello")})
        urlencoded = await client.post(device.url("http", "/firmware_upload.html"),
                                       data={"firmware": "x"})
    assert form_only.status_code == 400 and "no file part" in form_only.text
    assert urlencoded.status_code == 400 and "multipart/form-data" in urlencoded.text
