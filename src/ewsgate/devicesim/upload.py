"""Firmware upload: a request body of any size streamed into a SHA-256, never held whole.

Every profile's firmware page posts ``multipart/form-data`` here. The body is fed chunk by chunk
to python-multipart's push parser (a state machine: bytes in, callbacks out), and the bytes of
the first part that carries a ``filename`` go straight into ``hashlib.sha256``; other parts
(small form fields such as a version or a CSRF token) are kept as text up to 4 KiB each.
A raw ``application/octet-stream`` body is hashed as is. The receipt answers with the digest and
the byte count, which is how a test (or a technician) proves the relay delivered every byte.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from ewsgate.devicesim.web import Request, Response, esc, html_response

__all__ = [
    "UploadError",
    "UploadReceipt",
    "receipt_html",
    "receipt_response",
    "receive_firmware",
]

_FIELD_LIMIT = 4096


class UploadError(ValueError):
    """The upload was not multipart/form-data (or octet-stream), or it had no file part."""

    code = "devicesim.upload_malformed"


@dataclass
class UploadReceipt:
    """What the device received: the file's SHA-256 and size, and the small fields beside it."""

    sha256: str
    size: int
    filename: str | None
    fields: dict[str, str] = field(default_factory=dict)


async def receive_firmware(request: Request) -> UploadReceipt:
    """Consume ``request``'s body and hash its file part; raise :class:`UploadError` if absent."""
    content_type, params = parse_options_header(request.header("content-type") or "")
    digest = hashlib.sha256()
    if content_type == b"application/octet-stream":
        size = 0
        async for chunk in request.body:
            digest.update(chunk)
            size += len(chunk)
        return UploadReceipt(digest.hexdigest(), size, None)
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise UploadError("send the firmware as multipart/form-data with a boundary "
                          f"(got Content-Type {request.header('content-type')!r})")

    receipt = UploadReceipt("", 0, None)
    part = _Part()

    def on_part_begin() -> None:
        part.reset()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part.header_value += data[start:end]

    def on_header_end() -> None:
        if part.header_field.lower() == b"content-disposition":
            part.disposition = part.header_value
        part.header_field = b""
        part.header_value = b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(part.disposition)
        part.name = disp.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in disp and not part.file_taken:
            part.is_file = part.file_taken = True
            receipt.filename = disp[b"filename"].decode("utf-8", "replace")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part.is_file:
            digest.update(data[start:end])
            receipt.size += end - start
        elif len(part.value) < _FIELD_LIMIT:
            part.value += data[start:end]

    def on_part_end() -> None:
        if not part.is_file and part.name:
            receipt.fields[part.name] = part.value[:_FIELD_LIMIT].decode("utf-8", "replace")

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    })
    try:
        async for chunk in request.body:
            parser.write(chunk)
        parser.finalize()
    except Exception as exc:
        if isinstance(exc, ConnectionError):
            raise
        raise UploadError(f"the multipart body is malformed: {exc}") from None
    if not part.file_taken:
        raise UploadError("the form had no file part; choose a firmware file and submit again")
    receipt.sha256 = digest.hexdigest()
    return receipt


class _Part:
    """Parser state for the part being read."""

    def __init__(self) -> None:
        self.file_taken = False
        self.reset()

    def reset(self) -> None:
        self.header_field = b""
        self.header_value = b""
        self.disposition = b""
        self.name = ""
        self.value = b""
        self.is_file = False


def receipt_response(request: Request, receipt: UploadReceipt, *, page: str) -> Response:
    """JSON with ``?format=json`` (or ``Accept: application/json``), else ``page`` (HTML)."""
    wants_json = (request.arg("format") == "json"
                  or "application/json" in (request.header("accept") or ""))
    if wants_json:
        return Response(200, [("Content-Type", "application/json")],
                        json.dumps(asdict(receipt)).encode())
    return html_response(page)


def receipt_html(receipt: UploadReceipt) -> str:
    """The device's confirmation table, for profiles to wrap in their layout."""
    return (
        '<table class="grid" id="firmware-receipt">'
        f'<tr><th>File</th><td id="fw-filename">{esc(receipt.filename or "(raw body)")}</td></tr>'
        f'<tr><th>Bytes received</th><td id="fw-size">{receipt.size}</td></tr>'
        f'<tr><th>SHA-256</th><td id="fw-sha256"><code>{receipt.sha256}</code></td></tr>'
        "</table><p>The image was verified and is ready to install. "
        "The device will restart when you choose <em>Install</em> (simulated: nothing is "
        "installed).</p>"
    )

